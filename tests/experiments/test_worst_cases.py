import json

import pytest

pytest.importorskip("highspy")
pytest.importorskip("matplotlib")


@pytest.mark.solver
def test_worst_cases_quick_and_resumable(tmp_path, capsys):
    import importlib.util
    import pathlib
    import sys

    p = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "worst_cases.py"
    spec = importlib.util.spec_from_file_location("worst_cases", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["worst_cases"] = mod
    spec.loader.exec_module(mod)
    argv = ["--quick", "--schedulers", "fcfs", "--objectives", "attainment", "--out",
            str(tmp_path), "--figures", str(tmp_path / "fig")]
    assert mod.main(argv) == 0
    doc = json.loads((tmp_path / "worst_cases.json").read_text())
    (row,) = doc["rows"]
    assert row["scheduler"] == "fcfs" and row["n_max"] == 4 and row["examples"] == 20
    assert (tmp_path / "fig" / "worst_attainment_fcfs.png").exists()
    assert "| fcfs |" in capsys.readouterr().out
    cell = tmp_path / "attainment" / "fcfs" / "n4" / "worst.json"
    stamp = cell.stat().st_mtime_ns
    assert mod.main(argv) == 0  # reused, not recomputed
    assert cell.stat().st_mtime_ns == stamp
