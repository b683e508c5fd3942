"""Worst cases on demand: the instance where a scheduler is furthest from the exact optimum.

:func:`worst_case` runs hypothesis with :func:`hypothesis.target` on the gap between the exact
offline optimum of the slotted engine and a policy's simulated value, over instances small
enough for the exact MILP, then lets hypothesis shrink the worst instance to a minimal one
that is at least as bad. Every example is scored by two independent computations:

* the **policy**: :func:`slo_opt.sim.simulator.simulate`, checked by
  :func:`slo_opt.checks.violations`, scored by :mod:`slo_opt.metrics`;
* the **optimum**: the MILP's extracted schedule (:class:`~slo_opt.solvers.GoodputMILP` for
  attainment and goodput, :class:`~slo_opt.solvers.jct_milp.MeanJCTMILP` for mean JCT), checked
  by ``violations`` and scored by the *same* metrics, which must equal the MILP's objective.

Objectives and gaps (``ratio`` is a competitive ratio, >= 1 when the policy is worse):

* ``attainment``: fraction of requests meeting their SLO; gap = optimum - value, ratio =
  optimum / value;
* ``goodput``: output tokens of requests meeting their SLO; gap and ratio as above;
* ``mean_jct``: mean e2e latency (finish - arrival) with every request served, SLOs ignored;
  ratio = value / optimum, gap = value - optimum (seconds); the search targets the ratio.

The optimum is over non-preemptive schedules (the MILPs' space); a preempting policy can beat
it (a negative gap), which the result counts (``beaten``) rather than hides.

Determinism: a run is a function of its arguments. Hypothesis runs without a database, from
``seed`` (``hypothesis.seed``), with ``derandomize`` off and no time-based stopping; the shrink
phase is capped by a count of evaluations (``shrink_examples``), not by time. MILP solves use
one thread; a solve that hits ``time_limit_s`` (machine load) discards its example, the only
way load can change a result, and is counted in ``unsolved``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedule import Schedule
from slo_opt.sim.simulator import simulate

__all__ = [
    "OBJECTIVES",
    "GapEvaluation",
    "WorstCase",
    "evaluate_gap",
    "save_worst_case",
    "verify_worst_case",
    "worst_case",
    "worst_case_instances",
]

Objective = Literal["attainment", "goodput", "mean_jct"]
OBJECTIVES: tuple[str, ...] = ("attainment", "goodput", "mean_jct")
#: Relative tolerance between the MILP objective and the metrics of its extracted schedule.
REPLAY_RTOL = 1e-9
#: Stand-in for an infinite ratio in ``hypothesis.target`` (which needs a finite float).
_INF_SCORE = 1e6
#: Non-preemptive heuristics whose schedules tighten the mean-JCT MILP's horizons.
_JCT_HELPERS = ("fcfs", "sjf", "vllm", "sarathi")


class WorstCaseError(RuntimeError):
    """The two computations disagree (a bug in the simulator, the metrics or the MILP)."""


# -- instances ----------------------------------------------------------------------------------
@st.composite
def worst_case_instances(draw: Any, *, n_max: int = 8, objective: str = "attainment",
                         engine: SlotEngine | None = None, max_prompt_tokens: int = 32,
                         max_output_tokens: int = 8, step_s: float = 0.05,
                         simultaneous: bool = False) -> tuple[Workload, SlotEngine]:
    """Instances for :func:`worst_case`: ``(workload, engine)`` on a token-exact ``SlotEngine``.

    Each request arrives at the start of a slot in ``0..n_max`` (drawn per request, then sorted,
    so deleting a request while shrinking leaves the others' arrivals alone; all at 0 with
    ``simultaneous``, the setting of MC-SF's constant competitive ratio); every request fits the
    KV cache alone and its prompt fits one step's token budget (so every policy can serve it
    alone: a gap is a scheduling loss, not a missing feature such as chunked prefill). SLOs
    (attainment, goodput): always an e2e deadline, the request's own service time (``O``
    slots) plus 0..24 slots of slack (bounded MILP windows); a TTFT deadline of 1..12 slots or
    none; a TPOT of 1, 1.5, 2 or 3 slots or none. ``mean_jct`` instances have no SLOs. Without
    ``engine``, the engine is drawn too: token budget 4..32, KV capacity 16..128 tokens. Shrinking removes requests first, then lowers lengths, gaps and
    capacities.
    """
    if engine is None:
        B = draw(st.integers(4, 32))
        M = draw(st.integers(16, 128))
        engine = SlotEngine(step_s=step_s, max_batch_tokens=B, kv_capacity_tokens=M)
    D, B, M = float(engine.step_s), int(engine.max_batch_tokens), int(engine.kv_capacity_tokens)
    p_hi = max(1, min(max_prompt_tokens, B, M))
    slo = objective != "mean_jct"

    @st.composite
    def request(d: Any) -> tuple[int, int, int, float, float, float]:
        gap = 0 if simultaneous else d(st.integers(0, n_max))  # arrival slot (sorted below)
        P = d(st.integers(1, p_hi))
        O = d(st.integers(1, max(1, min(max_output_tokens, M - P + 1))))
        if not slo:
            return gap, P, O, math.inf, math.inf, math.inf
        # e2e: the request's service time alone (1 prefill slot + O - 1 decodes) plus slack
        e2e = (O + d(st.integers(0, 24))) * D
        ttft = d(st.one_of(st.just(math.inf), st.integers(1, 12).map(lambda k: k * D)))
        tpot = d(st.one_of(st.just(math.inf), st.sampled_from([1.0, 1.5, 2.0, 3.0]).map(
            lambda f: f * D)))
        return gap, P, O, ttft, tpot, e2e

    reqs = draw(st.lists(request(), min_size=1, max_size=n_max))
    reqs.sort(key=lambda q: q[0])  # stable: ids follow arrival order
    slots, P, O, ttft, tpot, e2e = (np.array(c) for c in zip(*reqs))
    arrival = slots * D
    w = Workload.from_arrays(arrival, P, O, ttft_slo_s=ttft, tpot_slo_s=tpot, e2e_slo_s=e2e)
    return w, engine


# -- one example: two independent computations ----------------------------------------------------
@dataclass(frozen=True, eq=False)
class GapEvaluation:
    """A policy against the exact optimum on one instance.

    Attributes
    ----------
    value, optimum : float
        The policy's and the optimum's objective, both computed by :mod:`slo_opt.metrics`
        (``mean_jct``: ``inf`` when the policy leaves a request unserved).
    gap, ratio : float
        See the module docstring.
    milp_objective : float
        The MILP's own objective value (equal to ``optimum`` within :data:`REPLAY_RTOL`).
    policy_schedule, optimum_schedule : Schedule
    solve_s : float
        MILP wall time.
    """

    value: float
    optimum: float
    gap: float
    ratio: float
    milp_objective: float
    policy_schedule: Schedule
    optimum_schedule: Schedule
    solve_s: float

    def score(self, objective: str) -> float:
        """What the search maximises: the gap (``mean_jct``: the ratio), finite."""
        s = self.ratio if objective == "mean_jct" else self.gap
        return _INF_SCORE if not math.isfinite(s) else float(s)


def objective_value(schedule: Schedule, workload: Workload, objective: str) -> float:
    """``objective`` of ``schedule`` computed from :func:`slo_opt.metrics.request_metrics`."""
    m = request_metrics(schedule, workload)
    if objective == "attainment":
        return float(m["slo_met"].mean()) if len(workload) else 1.0
    if objective == "goodput":
        return float(workload.output_tokens[m["slo_met"]].sum())
    if objective == "mean_jct":
        e2e = m["e2e_s"]
        if len(workload) == 0:
            return 0.0
        served = m["finished"] & ~m["rejected"]
        return float(np.mean(e2e)) if bool(served.all()) else math.inf
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def _gap_ratio(value: float, optimum: float, objective: str) -> tuple[float, float]:
    if objective == "mean_jct":
        gap = value - optimum
        ratio = math.inf if not math.isfinite(value) else (value / optimum if optimum > 0 else 1.0)
        return gap, ratio
    gap = optimum - value
    if value > 0:
        return gap, optimum / value
    return gap, (1.0 if optimum <= 0 else math.inf)


def _fresh(policy: Any) -> Any:
    """A new scheduler: call a factory (or a class), deep-copy an instance."""
    if isinstance(policy, type) or (callable(policy) and not hasattr(policy, "plan")):
        return policy()
    return copy.deepcopy(policy)


def _step_cap(workload: Workload) -> int:
    return int(100 + 20 * (workload.prompt_tokens.sum() + workload.output_tokens.sum()))


def _finish_slots(schedule: Schedule, step_s: float) -> np.ndarray | None:
    """Finishing slots of a non-preemptive schedule that served everything (else None)."""
    if len(schedule.events) or np.any(schedule.finish_step < 0) or np.any(schedule.rejected):
        return None
    return np.rint(schedule.finish_s / step_s).astype(np.int64) - 1


def evaluate_gap(policy: Any, workload: Workload, engine: SlotEngine, *,
                 objective: str = "attainment", time_limit_s: float = 20.0) -> GapEvaluation | None:
    """Simulate ``policy`` and solve the exact optimum of ``(workload, engine)``; compare.

    Returns ``None`` when the MILP does not prove optimality within ``time_limit_s``. Raises
    :class:`~slo_opt.testing.ConformanceError` if the policy's schedule is infeasible and
    :class:`WorstCaseError` if the optimum's schedule is infeasible or its metrics disagree with
    the MILP objective.
    """
    from slo_opt.solvers import GoodputMILP, Instance, Status, solve
    from slo_opt.testing import ConformanceError

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    sched = simulate(workload, engine, _fresh(policy), max_steps=_step_cap(workload))
    bad = violations(sched, workload, engine)
    if bad:
        raise ConformanceError(f"{getattr(sched, 'meta', {}).get('scheduler', '?')}: "
                               f"infeasible schedule: {bad[:5]}")
    value = objective_value(sched, workload, objective)
    inst = Instance(workload, engine)
    warm = None
    if objective == "mean_jct":
        f, warm = _jct_formulation(workload, engine, sched)
    else:
        f = GoodputMILP(objective=objective)  # type: ignore[assignment]
    res = solve(f, inst, time_limit_s=time_limit_s, rel_gap=1e-9, warm_start=warm)
    if res.status != Status.OPTIMAL or res.schedule is None or res.incumbent is None:
        if res.status in (Status.INFEASIBLE, Status.ERROR, Status.NUMERICAL):
            raise WorstCaseError(f"exact MILP ({objective}): {res.status.value}: {res.message}")
        return None
    opt_sched = res.schedule
    bad = violations(opt_sched, workload, engine)
    if bad:
        raise WorstCaseError(f"the MILP's schedule is infeasible: {bad[:5]}")
    optimum = objective_value(opt_sched, workload, objective)
    if not math.isclose(optimum, res.incumbent, rel_tol=REPLAY_RTOL, abs_tol=REPLAY_RTOL):
        raise WorstCaseError(f"metrics score the MILP's schedule {optimum!r}, the MILP says "
                             f"{res.incumbent!r} ({objective})")
    gap, ratio = _gap_ratio(value, optimum, objective)
    return GapEvaluation(value=value, optimum=optimum, gap=gap, ratio=ratio,
                         milp_objective=float(res.incumbent), policy_schedule=sched,
                         optimum_schedule=opt_sched, solve_s=res.wall_s)


def _jct_formulation(workload: Workload, engine: SlotEngine, sched: Schedule) -> tuple[Any, Any]:
    """Mean-JCT MILP with horizons from the best non-preemptive schedule at hand (and that
    schedule as the MIP start)."""
    from slo_opt.schedulers import make
    from slo_opt.solvers.jct_milp import MeanJCTMILP

    D = float(engine.step_s)
    cands = [sched] + [simulate(workload, engine, make(nm), max_steps=_step_cap(workload))
                       for nm in _JCT_HELPERS]
    best: tuple[int, Schedule] | None = None
    for s in cands:
        fin = _finish_slots(s, D)
        if fin is not None and (best is None or int(fin.sum()) < best[0]):
            best = (int(fin.sum()), s)
    if best is None:
        return MeanJCTMILP(), None
    return MeanJCTMILP(sum_finish_bound_slots=best[0]), best[1]


# -- the search --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class WorstCase:
    """The worst instance found (shrunk), both schedules and the gap.

    Attributes
    ----------
    scheduler : str
        The policy's registered name (``name`` attribute).
    objective : str
    workload : Workload
    engine : SlotEngine
    value, optimum, gap, ratio : float
        See :class:`GapEvaluation` (of the shrunk instance).
    policy_schedule, optimum_schedule : Schedule
    found_score : float
        The best score seen while searching, before shrinking (the shrunk instance scores at
        least this much).
    shrunk : bool
        Whether the instance was shrunk (not when no example had a positive score).
    examples, evaluated, unsolved, beaten : int
        Examples asked for; distinct instances evaluated (search and shrinking); examples whose
        MILP hit the time limit; examples where the policy beat the non-preemptive optimum.
    seed, n_max : int
    search_s, shrink_s : float
        Wall time of the two phases.
    """

    scheduler: str
    objective: str
    workload: Workload
    engine: SlotEngine
    value: float
    optimum: float
    gap: float
    ratio: float
    policy_schedule: Schedule
    optimum_schedule: Schedule
    found_score: float
    shrunk: bool
    examples: int
    evaluated: int
    unsolved: int
    beaten: int
    seed: int
    n_max: int
    search_s: float
    shrink_s: float
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of requests of the (shrunk) instance."""
        return len(self.workload)

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline (``worst.json``); infinite ratios are ``None``."""
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        e = self.engine
        return {
            "scheduler": self.scheduler, "params": self.params, "objective": self.objective,
            "gap": num(self.gap), "ratio": num(self.ratio), "n": self.n,
            "optimum": num(self.optimum), "value": num(self.value),
            "examples": self.examples, "seed": self.seed, "n_max": self.n_max,
            "found_score": num(self.found_score), "shrunk": self.shrunk,
            "evaluated": self.evaluated, "unsolved": self.unsolved, "beaten": self.beaten,
            "search_s": self.search_s, "shrink_s": self.shrink_s, "options": self.options,
            "engine": {"step_s": e.step_s, "max_batch_tokens": e.max_batch_tokens,
                       "kv_capacity_tokens": e.kv_capacity_tokens,
                       "kv_block_tokens": e.kv_block_tokens},
        }


class _Found(Exception):
    """Raised inside the shrink run for an instance at least as bad as the best found."""


def _key(w: Workload, e: SlotEngine) -> tuple[Any, ...]:
    return (w.arrival_s.tobytes(), w.prompt_tokens.tobytes(), w.output_tokens.tobytes(),
            w.ttft_slo_s.tobytes(), w.tpot_slo_s.tobytes(), w.e2e_slo_s.tobytes(),
            float(e.step_s), int(e.max_batch_tokens), int(e.kv_capacity_tokens))


def worst_case(
    policy_factory: Any | Callable[[], Any],
    *,
    objective: str = "attainment",
    n_max: int = 8,
    examples: int = 200,
    engine: SlotEngine | None = None,
    seed: int = 0,
    shrink_examples: int | None = None,
    time_limit_s: float = 20.0,
    max_prompt_tokens: int = 32,
    max_output_tokens: int = 8,
    simultaneous: bool = False,
    progress: Callable[[str, int, float], None] | None = None,
) -> WorstCase:
    """Search for the instance on which a policy is furthest from the exact optimum.

    Parameters
    ----------
    policy_factory : callable or Scheduler
        A zero-argument callable returning a fresh scheduler, or a scheduler (deep-copied for
        every run), as for :func:`~slo_opt.testing.check_conformance`.
    objective : {"attainment", "goodput", "mean_jct"}
        See the module docstring.
    n_max : int
        Most requests per instance (the exact MILPs solve n <= 16 in about a second or less;
        ``mean_jct`` is the slowest).
    examples : int
        Hypothesis examples in the search phase (``max_examples``).
    engine : SlotEngine, optional
        Fix the engine (must have ``kv_block_tokens == 1``); by default it is drawn with the
        instance (:func:`worst_case_instances`).
    seed : int
        Hypothesis seed: equal arguments give equal results.
    shrink_examples : int, optional
        New instances the shrink phase may evaluate (default: ``max(examples, 300)``; shrinking
        FCFS's worst attainment case found in 100 examples at ``n_max = 8`` took 339); after that, unseen
        instances count as not worse, so hypothesis stops at the smallest one found so far.
    time_limit_s : float
        MILP time limit per instance (examples that hit it are discarded and counted).
    max_prompt_tokens, max_output_tokens : int
        Length ranges of the drawn requests.
    simultaneous : bool
        All requests arrive at time 0 (the offline batch setting).
    progress : callable, optional
        Called after every new evaluation as ``progress(phase, evaluated, best_score)`` with
        ``phase`` ``"search"`` or ``"shrink"`` (e.g. to print progress).

    Returns
    -------
    WorstCase

    Raises
    ------
    ConformanceError
        A simulated schedule of the policy is infeasible (with the instance in the message).
    WorstCaseError
        The MILP's schedule fails ``violations`` or its metrics differ from the MILP objective.

    Notes
    -----
    Do not call it from inside a ``@given`` test (hypothesis does not nest); call it from a
    plain test and assert on the returned gap. Uses no example database.

    Examples
    --------
    >>> from slo_opt.schedulers import make
    >>> wc = worst_case(lambda: make("fcfs"), n_max=4, examples=50, seed=1)  # doctest: +SKIP
    >>> wc.gap, wc.n, wc.ratio                                               # doctest: +SKIP
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    for nm, v in (("n_max", n_max), ("examples", examples)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{nm} must be an int >= 1, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if shrink_examples is None:
        shrink_examples = max(int(examples), 300)
    if isinstance(shrink_examples, bool) or not isinstance(shrink_examples, int) \
            or shrink_examples < 0:
        raise ValueError(f"shrink_examples must be an int >= 0, got {shrink_examples!r}")
    if not isinstance(simultaneous, bool):
        raise ValueError(f"simultaneous must be a bool, got {simultaneous!r}")
    if not (time_limit_s > 0):
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s!r}")
    if engine is not None:
        if not isinstance(engine, SlotEngine):
            raise TypeError(f"engine must be a SlotEngine, got {type(engine).__name__}")
        if engine.kv_block_tokens != 1:
            raise ValueError("the exact MILPs need token-exact KV: kv_block_tokens=1")
    probe = _fresh(policy_factory)
    name = str(getattr(probe, "name", type(probe).__name__))
    params = _params_of(probe)

    strategy = worst_case_instances(n_max=int(n_max), objective=objective, engine=engine,
                                    max_prompt_tokens=max_prompt_tokens,
                                    max_output_tokens=max_output_tokens,
                                    simultaneous=bool(simultaneous))
    cache: dict[tuple[Any, ...], GapEvaluation | None] = {}
    counters = {"unsolved": 0, "beaten": 0, "new_in_shrink": 0, "evaluated": 0}
    shrinking = [False]
    best: list[Any] = [None, -math.inf]

    def evaluate(inst: tuple[Workload, SlotEngine]) -> GapEvaluation | None:
        k = _key(*inst)
        if k in cache:
            return cache[k]
        if shrinking[0]:
            if counters["new_in_shrink"] >= shrink_examples:
                cache[k] = None  # budget spent: unseen instances are "not worse"
                return None
            counters["new_in_shrink"] += 1
        ev = evaluate_gap(policy_factory, inst[0], inst[1], objective=objective,
                          time_limit_s=time_limit_s)
        counters["evaluated"] += 1
        cache[k] = ev
        if progress is not None:
            sc = best[1] if ev is None else max(best[1], ev.score(objective))
            progress("shrink" if shrinking[0] else "search", counters["evaluated"], sc)
        if ev is None:
            counters["unsolved"] += 1
        elif ev.score(objective) < (1.0 if objective == "mean_jct" else 0.0) - 1e-12:
            counters["beaten"] += 1
        return ev

    def common(phases: tuple[Phase, ...]) -> settings:
        return settings(max_examples=int(examples), database=None, deadline=None,
                        derandomize=False, phases=phases, report_multiple_bugs=False,
                        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                        print_blob=False)

    @hyp_seed(int(seed))
    @common((Phase.generate, Phase.target))
    @given(strategy)
    def search(inst: tuple[Workload, SlotEngine]) -> None:
        ev = evaluate(inst)
        if ev is None:
            return
        s = ev.score(objective)
        target(s, label="gap")
        if s > best[1]:
            best[0], best[1] = inst, s

    t0 = time.perf_counter()
    search()
    search_s = time.perf_counter() - t0
    if best[0] is None:
        raise WorstCaseError(f"no example could be solved within time_limit_s={time_limit_s} "
                             f"({counters['unsolved']} tried)")
    found = best[1]
    floor = 1.0 if objective == "mean_jct" else 0.0
    inst = best[0]
    shrunk = False
    t1 = time.perf_counter()
    if found > floor + 1e-12 and shrink_examples > 0:
        @hyp_seed(int(seed))
        @common((Phase.generate, Phase.target, Phase.shrink))
        @given(strategy)
        def again(x: tuple[Workload, SlotEngine]) -> None:
            ev = evaluate(x)
            if ev is None:
                return
            s = ev.score(objective)
            if not shrinking[0]:
                target(s, label="gap")  # replay the search exactly up to the worst example
            if s >= found - 1e-12:
                shrinking[0] = True
                raise _Found(x)

        try:
            again()
        except _Found as exc:
            inst = exc.args[0]
            shrunk = True
    shrink_s = time.perf_counter() - t1
    ev = cache[_key(*inst)]
    assert ev is not None
    return WorstCase(
        scheduler=name, objective=objective, workload=inst[0], engine=inst[1], value=ev.value,
        optimum=ev.optimum, gap=ev.gap, ratio=ev.ratio, policy_schedule=ev.policy_schedule,
        optimum_schedule=ev.optimum_schedule, found_score=float(found), shrunk=shrunk,
        examples=int(examples), evaluated=counters["evaluated"], unsolved=counters["unsolved"], beaten=counters["beaten"],
        seed=int(seed), n_max=int(n_max), search_s=search_s, shrink_s=shrink_s, params=params,
        options={"engine_drawn": engine is None, "max_prompt_tokens": max_prompt_tokens,
                 "max_output_tokens": max_output_tokens, "simultaneous": simultaneous,
                 "time_limit_s": time_limit_s, "shrink_examples": shrink_examples})


def _params_of(policy: Any) -> dict[str, Any]:
    """The policy's init fields (JSON-friendly reprs for non-scalars)."""
    import dataclasses

    if not dataclasses.is_dataclass(policy):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        if not f.init:
            continue
        v = getattr(policy, f.name)
        out[f.name] = v if isinstance(v, bool | int | float | str | type(None)) else repr(v)
    return out


# -- output directory ----------------------------------------------------------------------------
#: Files :func:`save_worst_case` writes.
FILES = {"trace": "trace.csv", "policy_records": "policy_records.csv",
         "optimum_records": "optimum_records.csv", "policy_schedule": "policy_schedule.npz",
         "optimum_schedule": "optimum_schedule.npz", "summary": "worst.json",
         "gantt": "gantt.png"}


def save_worst_case(wc: WorstCase, out_dir: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """Write a :class:`WorstCase` to ``out_dir``; returns the paths written.

    ``trace.csv`` (the instance, every column; :func:`slo_opt.workloads.traces.load_csv` reads it
    back), ``policy_records.csv`` / ``optimum_records.csv`` (one row per request, the columns of
    ``slo-opt simulate``'s records, empty where undefined), ``policy_schedule.npz`` / ``optimum_schedule.npz`` (the
    schedules, :meth:`Schedule.load_npz`), ``worst.json`` (:meth:`WorstCase.summary`) and
    ``gantt.png`` (:func:`slo_opt.gantt.plot_side_by_side`; skipped without matplotlib or with
    ``plot=False``).
    """
    import csv
    import json

    from slo_opt.metrics import request_records
    from slo_opt.workloads.traces import save_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in FILES.items()}
    save_csv(wc.workload, paths["trace"], all_columns=True)
    for who, s in (("policy", wc.policy_schedule), ("optimum", wc.optimum_schedule)):
        rec = request_records(s, wc.workload)
        with open(paths[f"{who}_records"], "w", newline="", encoding="utf-8") as f:
            wr = csv.writer(f, lineterminator="\n")
            wr.writerow(list(rec))
            for row in zip(*(v.tolist() for v in rec.values())):
                wr.writerow(["" if isinstance(x, float) and math.isnan(x) else x for x in row])
        s.save_npz(str(paths[f"{who}_schedule"]))
    doc = wc.summary()
    doc["files"] = {k: v for k, v in FILES.items() if k != "summary"}
    paths["summary"].write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plot = False
    if plot:
        from slo_opt.gantt import plot_side_by_side

        unit = " s" if wc.objective == "mean_jct" else ""

        def fmt(x: float) -> str:
            return f"{x:.4g}{unit}"

        plot_side_by_side(
            wc.workload, wc.engine, wc.policy_schedule, wc.optimum_schedule,
            titles=(f"{wc.scheduler}: {wc.objective} {fmt(wc.value)}",
                    f"exact optimum: {wc.objective} {fmt(wc.optimum)}"),
            suptitle=(f"worst case of {wc.scheduler} ({wc.objective}, n={wc.n}): gap "
                      f"{wc.gap:.4g}, ratio {wc.ratio:.4g}; engine B={wc.engine.max_batch_tokens}"
                      f" tokens/step, KV {wc.engine.kv_capacity_tokens} tokens, "
                      f"step {wc.engine.step_s} s"),
            path=paths["gantt"])
    else:
        paths.pop("gantt")
    return paths


def verify_worst_case(out_dir: str | Path) -> dict[str, float]:
    """Re-check a directory written by :func:`save_worst_case` from its files alone.

    Reads the trace, the engine from ``worst.json`` and both schedules; checks both with
    :func:`slo_opt.checks.violations`, scores them with :mod:`slo_opt.metrics` and compares
    with the reported ``value``, ``optimum``, ``gap`` and ``ratio``. Raises
    :class:`WorstCaseError` on any difference; returns the recomputed numbers.
    """
    import json

    from slo_opt.workloads.traces import load_csv

    out = Path(out_dir)
    doc = json.loads((out / FILES["summary"]).read_text())
    w = load_csv(out / FILES["trace"])
    e = SlotEngine(**doc["engine"])
    got: dict[str, float] = {}
    for who, key in (("policy", "value"), ("optimum", "optimum")):
        s = Schedule.load_npz(str(out / FILES[f"{who}_schedule"]))
        bad = violations(s, w, e)
        if bad:
            raise WorstCaseError(f"{who} schedule in {out} is infeasible: {bad[:5]}")
        got[key] = objective_value(s, w, doc["objective"])
    gap, ratio = _gap_ratio(got["value"], got["optimum"], doc["objective"])
    got.update(gap=gap, ratio=ratio, n=float(len(w)))
    for k in ("value", "optimum", "gap", "ratio", "n"):
        want = doc[k]
        want = math.inf if want is None else float(want)
        if not (want == got[k] or math.isclose(want, got[k], rel_tol=REPLAY_RTOL,
                                               abs_tol=REPLAY_RTOL)):
            raise WorstCaseError(f"{out}: {k} recomputes to {got[k]!r}, reported {want!r}")
    return got
