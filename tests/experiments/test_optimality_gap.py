import pytest

pytest.importorskip("highspy")
pytest.importorskip("matplotlib")


@pytest.mark.solver
def test_optimality_gap_quick(tmp_path):
    import importlib.util
    import pathlib

    p = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "optimality_gap.py"
    spec = importlib.util.spec_from_file_location("optimality_gap", p)
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules["optimality_gap"] = mod
    spec.loader.exec_module(mod)
    rows = mod.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "records.csv").exists() and (tmp_path / "optimality_gap.png").exists()
    opt = {(r["load"], r["seed"]): r["value"] for r in rows if r["policy"] == "opt"}
    bound = {(r["load"], r["seed"]): r["value"] for r in rows if r["policy"] == "opt_bound"}
    for r in rows:
        if r["kind"] == "heuristic" and r["size"] == "small":
            assert r["value"] <= bound[(r["load"], r["seed"])] + 1e-7
    assert all(opt[k] <= bound[k] + 1e-9 for k in opt)
