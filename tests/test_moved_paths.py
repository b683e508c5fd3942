"""The 0.1 module paths keep working for one release: same objects, and a DeprecationWarning."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from slo_opt._moved import MOVED, new_name

ROOT = Path(__file__).resolve().parents[1]

#: (module, attribute, module it moved to) for names that moved between modules.
FORWARDED = [
    ("slo_opt.solvers.pattern_milp", "solve_with_certificate", "slo_opt.study.certificate"),
    ("slo_opt.solvers.pattern_milp", "Certificate", "slo_opt.study.certificate"),
    ("slo_opt.solvers", "solve_with_certificate", "slo_opt.study.certificate"),
    ("slo_opt.solvers", "cli_solve", "slo_opt.cli.solve"),
    ("slo_opt.solvers.placement_slotted", "slotted_inputs", "slo_opt.study.placement"),
    ("slo_opt.study.sweep", "cli_main", "slo_opt.cli.sweep"),
]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_warns_and_is_the_new_module(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=MOVED[old].replace(".", r"\.")):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(MOVED[old])


def test_submodules_of_a_moved_package_are_not_loaded_twice():
    from slo_opt.edge.dispatchers import DISPATCHERS, perllm

    sys.modules.pop("slo_opt.dispatchers.perllm", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("slo_opt.dispatchers.perllm")
    assert old is perllm
    with pytest.warns(DeprecationWarning):
        from slo_opt.dispatchers.base import DISPATCHERS as old_registry
    assert old_registry is DISPATCHERS


def test_old_names_from_imports():
    import slo_opt.sim.simulator as sim
    import slo_opt.workloads.traces as tr

    for m in ("slo_opt.simulator", "slo_opt.traces"):
        sys.modules.pop(m, None)
    with pytest.warns(DeprecationWarning):
        from slo_opt.simulator import ARRIVAL_EPS_S, Simulation, simulate
    with pytest.warns(DeprecationWarning):
        from slo_opt.traces import default_workload
    assert (simulate, Simulation, ARRIVAL_EPS_S) == (sim.simulate, sim.Simulation,
                                                     sim.ARRIVAL_EPS_S)
    assert default_workload is tr.default_workload


@pytest.mark.parametrize(("module", "name", "target"), FORWARDED)
def test_forwarded_names_warn_and_are_the_same_objects(module, name, target):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name}"):
        obj = getattr(mod, name)
    assert obj is getattr(importlib.import_module(target), name)
    with pytest.raises(AttributeError):
        mod.no_such_name


def test_new_name_mapping():
    assert new_name("slo_opt.dispatchers.ucb") == "slo_opt.edge.dispatchers.ucb"
    assert new_name("slo_opt.cluster_sim") == "slo_opt.edge.simulation"
    assert new_name("slo_opt.cluster") == "slo_opt.edge.cluster"
    assert new_name("slo_opt.workloads.traces") is None  # a new path is not an old one
    assert new_name("slo_opt.sim.simulator") is None


def _old_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names  # type: ignore[attr-defined]
                if new_name(n) is not None]
    return bad


def test_nothing_in_the_repository_imports_an_old_path():
    skip = {Path(__file__).resolve(), ROOT / "benchmarks" / "ab.py"}  # ab.py runs on both sides
    files = [p for d in ("slo_opt", "solvers", "models", "experiments", "benchmarks", "tests")
             for p in (ROOT / d).rglob("*.py") if p.resolve() not in skip]
    assert len(files) > 50
    bad = [b for p in files for b in _old_imports(p)]
    assert bad == []


def test_importing_every_module_raises_no_deprecation_warning():
    code = (
        "import importlib, pkgutil, warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import slo_opt, slo_opt.models, slo_opt.solvers\n"
        "n = 0\n"
        "for pkg in (slo_opt, slo_opt.models, slo_opt.solvers):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name != 'slo_opt.cli.__main__':\n"
        "            importlib.import_module(m.name); n += 1\n"
        "print(n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 40
