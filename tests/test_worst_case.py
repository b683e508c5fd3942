"""``slo_opt.testing.worst_case``: gaps from two independent computations, a hand-solved worst
case, determinism for a seed, shrinking, the output directory replayed from its files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("highspy")

from hypothesis import given, settings

from slo_opt.checks import violations
from slo_opt.metrics import attainment, goodput_tokens, request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.testing import (
    evaluate_gap,
    save_worst_case,
    verify_worst_case,
    worst_case,
    worst_case_instances,
)
from slo_opt.worst_case import WorstCaseError

pytestmark = pytest.mark.solver


def head_of_line() -> tuple[Workload, SlotEngine]:
    """B = 4 tokens per 1 s slot; r0 (prompt 4, e2e 2 s), r1 and r2 (prompt 1, e2e 1 s), all
    output 1, all at 0. FCFS fills slot 0 with r0's prompt, r1 and r2 finish at 2 s: 1/3.
    The optimum serves r1, r2 and 2 tokens of r0 in slot 0, the rest of r0 in slot 1: 3/3."""
    w = Workload.from_arrays([0.0, 0.0, 0.0], [4, 1, 1], [1, 1, 1], e2e_slo_s=[2.0, 1.0, 1.0])
    return w, SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)


def test_hand_solved_head_of_line_gap():
    w, e = head_of_line()
    ev = evaluate_gap(lambda: make("fcfs"), w, e, objective="attainment")
    assert ev.value == pytest.approx(1 / 3) and ev.optimum == pytest.approx(1.0)
    assert ev.gap == pytest.approx(2 / 3) and ev.ratio == pytest.approx(3.0)
    gp = evaluate_gap(lambda: make("fcfs"), w, e, objective="goodput")
    assert (gp.value, gp.optimum, gp.gap) == (1.0, 3.0, 2.0)


@settings(max_examples=15)
@given(inst=worst_case_instances(n_max=5))
def test_gap_is_two_independent_computations(inst):
    """Re-simulate the policy and re-score the optimum's schedule here, from scratch."""
    w, e = inst
    for objective, score in (("attainment", attainment), ("goodput", goodput_tokens)):
        ev = evaluate_gap(make("vllm"), w, e, objective=objective)
        assert ev is not None
        s = simulate(w, e, make("vllm"))
        assert s == ev.policy_schedule
        assert score(s, w) == pytest.approx(ev.value, abs=1e-12)
        assert violations(ev.optimum_schedule, w, e) == []
        assert score(ev.optimum_schedule, w) == pytest.approx(ev.milp_objective, abs=1e-9)
        assert ev.gap == pytest.approx(ev.optimum - ev.value, abs=1e-12)
        # the exact optimum is never below the policy for a non-preempting schedule
        if len(s.events) == 0:
            assert ev.gap >= -1e-9


@settings(max_examples=8)
@given(inst=worst_case_instances(n_max=4, objective="mean_jct"))
def test_mean_jct_ratio(inst):
    w, e = inst
    assert np.all(np.isinf(w.e2e_slo_s))
    ev = evaluate_gap(make("fcfs"), w, e, objective="mean_jct")
    assert ev is not None
    m = request_metrics(ev.optimum_schedule, w)
    assert float(np.mean(m["e2e_s"])) == pytest.approx(ev.optimum, rel=1e-12)
    assert violations(ev.optimum_schedule, w, e) == []
    assert ev.ratio == pytest.approx(ev.value / ev.optimum)
    if len(ev.policy_schedule.events) == 0:
        assert ev.ratio >= 1 - 1e-12


def test_worst_case_finds_and_shrinks_fcfs_gap_deterministically():
    a = worst_case(lambda: make("fcfs"), n_max=5, examples=25, seed=3)
    b = worst_case(make("fcfs"), n_max=5, examples=25, seed=3)  # an instance works too
    assert a.gap > 0 and a.scheduler == "fcfs"
    assert a.shrunk and a.gap >= a.found_score - 1e-12
    assert a.n <= 5
    sa, sb = a.summary(), b.summary()
    for k in ("search_s", "shrink_s"):
        sa.pop(k), sb.pop(k)
    assert sa == sb
    assert a.workload == b.workload and a.policy_schedule == b.policy_schedule
    assert a.optimum_schedule == b.optimum_schedule


def test_policy_with_no_loss_reports_zero_gap():
    """With a huge token budget, deadlines loose and KV ample, nobody loses anything."""
    e = SlotEngine(step_s=0.05, max_batch_tokens=4096, kv_capacity_tokens=100_000)
    wc = worst_case(lambda: make("vllm"), n_max=2, examples=5, engine=e, seed=0,
                    max_prompt_tokens=2, max_output_tokens=1)
    assert wc.gap == 0 and wc.ratio == 1 and not wc.shrunk


def test_output_directory_replays_to_reported_values(tmp_path):
    wc = worst_case(lambda: make("fcfs"), n_max=4, examples=20, seed=1)
    paths = save_worst_case(wc, tmp_path, plot=False)
    doc = json.loads(paths["summary"].read_text())
    for k in ("scheduler", "objective", "gap", "ratio", "n", "optimum", "value", "examples",
              "seed"):
        assert k in doc
    got = verify_worst_case(tmp_path)
    assert got["gap"] == pytest.approx(wc.gap) and got["n"] == wc.n
    doc["gap"] = doc["gap"] + 0.01  # a tampered report is caught
    paths["summary"].write_text(json.dumps(doc))
    with pytest.raises(WorstCaseError, match="gap"):
        verify_worst_case(tmp_path)


def test_gantt_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    _, e = head_of_line()
    wc = worst_case(lambda: make("fcfs"), n_max=3, examples=3, engine=e, seed=0)
    paths = save_worst_case(wc, tmp_path)
    assert paths["gantt"].stat().st_size > 10_000


class Broken:
    """Plans one token more than a request needs: the search stops on it, not scores it."""

    name = "broken"

    def reset(self):
        pass

    def plan(self, view):
        from slo_opt.schedulers import StepPlan

        return StepPlan({int(r): view.next_tokens(int(r)) + 1 for r in view.waiting[:1]})


def test_a_policy_breaking_the_contract_stops_the_search():
    from slo_opt.sim.simulator import InvalidPlan

    with pytest.raises(InvalidPlan):
        worst_case(Broken, n_max=2, examples=3)


def test_bad_input_is_one_line_error():
    with pytest.raises(ValueError, match="objective"):
        worst_case(lambda: make("fcfs"), objective="jct")
    with pytest.raises(ValueError, match="n_max"):
        worst_case(lambda: make("fcfs"), n_max=0)
    with pytest.raises(ValueError, match="examples"):
        worst_case(lambda: make("fcfs"), examples="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token-exact"):
        worst_case(lambda: make("fcfs"), engine=SlotEngine(0.05, 16, 64, kv_block_tokens=16))
    with pytest.raises(ValueError, match="seed"):
        worst_case(lambda: make("fcfs"), seed=1.5)  # type: ignore[arg-type]


def test_ratio_is_infinite_when_the_policy_scores_zero():
    from slo_opt.worst_case import _gap_ratio

    assert _gap_ratio(0.0, 0.5, "attainment") == (0.5, math.inf)
    assert _gap_ratio(0.0, 0.0, "attainment") == (0.0, 1.0)
    assert _gap_ratio(math.inf, 2.0, "mean_jct")[1] == math.inf


# -- the command line ---------------------------------------------------------------------------
def test_cli_finds_a_gap_and_its_output_replays(tmp_path, capsys):
    """``slo-opt worst-case`` at a small size: gap > 0, and the written files replay through
    ``violations`` and ``metrics`` (recomputed here, not by the library's verifier) to the
    numbers in ``worst.json``."""
    from slo_opt.cli import main
    from slo_opt.schedule import Schedule
    from slo_opt.workloads.traces import load_csv

    out = tmp_path / "wc"
    rc = main(["worst-case", "--scheduler", "fcfs", "--n-max", "5", "--examples", "25",
               "--seed", "3", "--out", str(out), "--no-plot", "--quiet"])
    assert rc == 0
    assert "gap" in capsys.readouterr().out
    doc = json.loads((out / "worst.json").read_text())
    assert doc["scheduler"] == "fcfs" and doc["objective"] == "attainment"
    assert doc["gap"] > 0 and doc["examples"] == 25 and doc["seed"] == 3
    w = load_csv(out / "trace.csv")
    e = SlotEngine(**doc["engine"])
    assert len(w) == doc["n"]
    got = {}
    for who in ("policy", "optimum"):
        s = Schedule.load_npz(str(out / f"{who}_schedule.npz"))
        assert violations(s, w, e) == []
        got[who] = attainment(s, w)
    assert got["policy"] == pytest.approx(doc["value"], abs=1e-12)
    assert got["optimum"] == pytest.approx(doc["optimum"], abs=1e-12)
    assert got["optimum"] - got["policy"] == pytest.approx(doc["gap"], abs=1e-12)
    # the policy schedule is what fcfs does on the written instance
    assert simulate(w, e, make("fcfs")) == Schedule.load_npz(str(out / "policy_schedule.npz"))


@pytest.mark.parametrize("argv, msg", [
    (["--scheduler", "nope"], "unknown scheduler"),
    (["--scheduler", "fcfs", "--examples", "0"], "--examples"),
    (["--scheduler", "fcfs", "--step-s", "0.05"], "all three"),
    (["--scheduler", "fcfs", "--param", "batching=sometimes"], "batching"),
    (["--scheduler", "fcfs", "--time-limit", "0"], "--time-limit"),
])
def test_cli_bad_input_one_line_error(tmp_path, capsys, argv, msg):
    from slo_opt.cli import main

    rc = main(["worst-case", *argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
