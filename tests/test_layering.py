"""Import contract of the package layout (issue 13): no upward imports, no import cycles.

Layers, lowest first (a module may import only from its own layer or the layers below):

====  =======================================================================================
0     core values, the oracle and the metrics: ``request``, ``engine``, ``schedule``,
      ``checks``, ``metrics``, ``gantt``, ``registry``, ``_moved`` (compat shim), ``data``
1     ``models`` (engine/energy models) and ``workloads`` (generators, traces, predictors)
2     ``schedulers`` (``schedulers.base`` is the policy interface: ``EngineView``,
      ``StepPlan``, ``AdmitPromise``; one policy per file)
3     ``sim`` (drives a policy through ``schedulers.base`` only, never a concrete policy) and
      ``solvers`` (formulations depend on core and models only, never on heuristics)
4     ``edge`` (multi-site co-simulation and dispatchers)
5     faces: ``testing``, ``worst_case``, ``study`` (sweeps, certificates: schedulers vs solvers)
6     ``cli`` and the package facade ``slo_opt/__init__.py``
====  =======================================================================================

Every import counts for the direction rule, including imports inside functions (a lazy
upward import is still an upward dependency). Cycles are checked on module-level imports,
module by module.
The whole check reads source files with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYER0 = {"request", "engine", "schedule", "checks", "metrics", "gantt", "registry", "_moved",
          "data"}
LAYERS = {"models": 1, "workloads": 1, "schedulers": 2, "sim": 3, "solvers": 3, "edge": 4,
          "testing": 5, "worst_case": 5, "study": 5, "cli": 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("models", "solvers"):  # shipped as slo_opt.models / slo_opt.solvers
        parts = ["slo_opt", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    mods = {}
    for base in ("slo_opt", "models", "solvers"):
        for p in sorted((ROOT / base).rglob("*.py")):
            mods[module_name(p)] = p
    return mods


def layer(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1:
        return 6  # the facade
    if parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if parts[1] in LAYER0:
        return 0
    raise AssertionError(f"{mod}: not placed in a layer; add it to tests/test_layering.py")


def imports(mod: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported package module, line, at module level) for every import of ``mod``."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    top = {id(n) for n in tree.body}
    for n in tree.body:  # imports under a module-level ``if``/``try`` are module level too
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            subs = [f"{base}.{a.name}" for a in node.names]
            # ``from pkg import sub`` depends on sub; ``from pkg import name`` on pkg itself
            # (the version string is metadata, not a dependency on the facade)
            names = [s for s in subs if s in mods]
            if any(s not in mods and not s.endswith(".__version__") for s in subs):
                names.append(base)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for t in names:
            if t in mods and t != mod:
                out.append((t, node.lineno, id(node) in top))
    return out


def test_every_module_has_a_layer():
    for mod in package_modules():
        layer(mod)


def test_no_upward_imports():
    mods = package_modules()
    bad = []
    for mod, path in mods.items():
        for t, line, _ in imports(mod, path, mods):
            if layer(t) > layer(mod):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} (layer {layer(mod)}) "
                           f"imports {t} (layer {layer(t)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_simulator_sees_only_the_policy_interface():
    mods = package_modules()
    bad = [f"{mod} imports {t}" for mod, p in mods.items() if mod.startswith("slo_opt.sim")
           for t, _, _ in imports(mod, p, mods)
           if t.startswith("slo_opt.schedulers") and t not in ("slo_opt.schedulers.base",
                                                                 "slo_opt.schedulers")]
    assert not bad, bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state:
                c = visit(v)
                if c:
                    return c
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state:
            c = visit(u)
            if c:
                return c
    return None


def module_graph() -> dict[str, set[str]]:
    mods = package_modules()
    g: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        for t, _, top in imports(mod, path, mods):
            if top:
                g[mod].add(t)
    return g


def test_no_import_cycles():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_bite():
    """The cycle finder and the layer rule reject what they should (guards the guard)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert layer("slo_opt.cli.demo") > layer("slo_opt.sim.loop") > layer("slo_opt.request")
    assert layer("slo_opt.solvers.pattern_milp") == layer("slo_opt.sim.loop")
