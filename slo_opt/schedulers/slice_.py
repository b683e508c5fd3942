"""SLICE: utility-maximising task selection with decode-mask rate control (Zhou et al., 2025).

The two phases of the paper, as pure functions plus one plugin class:

* :func:`rates_per_cycle` -- the decode tokens ``v_i`` a task needs per cycle;
* :func:`t_period_s` -- the paper's cycle time ``T_period`` over the decode latency ``l(k)``;
* :func:`decode_mask` -- the decode-mask matrix (contiguous or evenly spread ones);
* :func:`greedy_select` -- phase 1, the utility-rate greedy with the "break"/"skip" stop rule;
* :class:`SLICE` -- the scheduler: re-selects on every arrival and completion, then runs one
  mask column per engine iteration.

The exact utility-optimal selection of one cycle is in :mod:`slo_opt.solvers.slice_milp`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from slo_opt.engine import BatchShape, EngineModel, decode_step_times_s
from slo_opt.schedulers.base import EngineView, StepPlan, register

__all__ = [
    "DEFAULT_CLASS_ORDER",
    "SLICE",
    "column_time_s",
    "decode_latency_table_s",
    "decode_mask",
    "greedy_select",
    "rates_per_cycle",
    "t_period_s",
]

#: The reference code's four priority classes, served in this order (papers.md 1.5).
DEFAULT_CLASS_ORDER: tuple[str, ...] = ("rt_short", "rt_long", "nrt_short", "nrt_long")

_EPS = 1e-9


def rates_per_cycle(tpot_s: np.ndarray, period_s: float, *,
                    rounding: Literal["ceil", "floor"] = "ceil") -> np.ndarray:
    """Decode tokens per cycle that meet a TPOT target: ``v_i = round(period / TPOT_i)``.

    ``rounding="floor"`` is the reference code's ``fillCount = (int)(1000/TPOT)``;
    ``"ceil"`` (default) makes ``T_period <= period`` sufficient for the TPOT SLO
    (``v_i * TPOT_i >= period``). A task without a TPOT target (``inf``) gets 1 token per cycle.
    Always >= 1.
    """
    tpot = np.asarray(tpot_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = period_s / tpot
    x = np.where(np.isfinite(tpot), x, 1.0)
    v = np.ceil(x - _EPS) if rounding == "ceil" else np.floor(x + _EPS)
    return np.maximum(v, 1).astype(np.int64)


def t_period_s(rates: Sequence[int] | np.ndarray, latency_s: np.ndarray) -> float:
    """The paper's cycle time: ``v_b l(b+1) + sum_{j<b} (v_j - v_{j+1}) l(j+1)``.

    Parameters
    ----------
    rates : sequence of int
        Decodes per cycle of the tasks of the batch (any order; sorted here, descending).
    latency_s : numpy.ndarray
        ``latency_s[k-1]`` = ``l(k)``, one decode iteration with batch size ``k``.

    Notes
    -----
    Equals ``sum_j l(#tasks in column j)`` for the contiguous mask (:func:`column_time_s`).
    SLICE section "task selection" [1]_; we implement the formula, not the reference code's
    off-by-one (papers.md 1.5, decision 8).

    References
    ----------
    .. [1] P. Zhou et al., "SLO-Driven Scheduling for LLM Inference on Edge Computing
       Devices", arXiv:2510.18544, 2025.
    """
    v = np.sort(np.asarray(rates, dtype=np.int64))[::-1]
    if v.size == 0:
        return 0.0
    if v.size > latency_s.size:
        raise ValueError(f"batch of {v.size} tasks exceeds the latency table ({latency_s.size})")
    steps = v - np.append(v[1:], 0)  # columns holding exactly k = 1..b+1 tasks
    return float(np.dot(steps, latency_s[: v.size]))


def decode_mask(rates: Sequence[int] | np.ndarray,
                placement: Literal["contiguous", "spread"] = "contiguous") -> np.ndarray:
    """The decode-mask matrix: rows = tasks, columns = decodes of one cycle (bool).

    ``contiguous`` fills columns ``0..v_i-1`` (the reference code); ``spread`` places the
    ``v_i`` ones evenly (Bresenham: column ``j`` iff ``floor((j+1) v/C) > floor(j v/C)``), the
    paper's "denser rows for stricter TPOT". The number of columns is ``C = max v_i``.
    """
    v = np.asarray(rates, dtype=np.int64)
    if v.size == 0:
        return np.zeros((0, 0), bool)
    c = int(v.max())
    j = np.arange(c)
    if placement == "contiguous":
        return j[None, :] < v[:, None]
    if placement == "spread":
        return ((j[None, :] + 1) * v[:, None]) // c > (j[None, :] * v[:, None]) // c
    raise ValueError(f"placement must be 'contiguous' or 'spread', got {placement!r}")


def column_time_s(mask: np.ndarray, latency_s: np.ndarray) -> float:
    """Cycle time of a mask: ``sum_j l(column sum j)`` (empty columns cost nothing)."""
    k = mask.sum(axis=0).astype(np.int64)
    k = k[k > 0]
    if k.size and k.max() > latency_s.size:
        raise ValueError("a column holds more tasks than the latency table covers")
    return float(latency_s[k - 1].sum())


def greedy_select(
    order: Sequence[int],
    rates: np.ndarray,
    latency_s: np.ndarray,
    period_limit_s: float,
    *,
    max_tasks: int = 16,
    stop_rule: Literal["break", "skip"] = "break",
    placement: Literal["contiguous", "spread"] = "contiguous",
    fits: Callable[[int], bool] | None = None,
    take: Callable[[int], None] | None = None,
) -> list[int]:
    """Phase 1: add tasks in ``order`` while the cycle time fits ``period_limit_s``.

    Parameters
    ----------
    order : sequence of int
        Candidate indices into ``rates``, best first (e.g. by utility rate ``U_i TPOT_i``).
    rates : numpy.ndarray
        Decodes per cycle of every candidate.
    latency_s : numpy.ndarray
        ``l(k)`` for ``k = 1..len``.
    period_limit_s : float
        The cycle length ``P``; a batch is feasible iff its cycle time ``<= P``.
    max_tasks : int
        Cap on selected tasks (reference code: 16).
    stop_rule : {"break", "skip"}
        ``break`` stops at the first task whose addition breaks the period (reference code);
        ``skip`` skips it and continues (knapsack greedy).
    placement : {"contiguous", "spread"}
        Cycle time: the paper's formula (contiguous) or the spread mask's column sum.
    fits, take : callable, optional
        Side constraint (KV): ``fits(i)`` is checked before the period; a candidate that fails
        it is skipped under both rules; ``take(i)`` is called when ``i`` is selected.

    Returns
    -------
    list of int
        Selected candidates, in selection order.
    """
    sel: list[int] = []
    cap = min(max_tasks, latency_s.size)
    for i in order:
        if len(sel) >= cap:
            break
        if fits is not None and not fits(i):
            continue
        trial = rates[[*sel, i]]
        t = (t_period_s(trial, latency_s) if placement == "contiguous"
             else column_time_s(decode_mask(trial, "spread"), latency_s))
        if t <= period_limit_s + _EPS:
            sel.append(i)
            if take is not None:
                take(i)
        elif stop_rule == "break":
            break
    return sel


def decode_latency_table_s(engine: EngineModel, max_batch: int,
                           typical_context_tokens: int) -> np.ndarray:
    """``l(k)`` for ``k = 1..max_batch`` from any engine model (pure-decode batches)."""
    return np.array([
        float(engine.step_time_s(BatchShape(decode_seqs=k,
                                            decode_context_tokens=k * typical_context_tokens)))
        for k in range(1, max_batch + 1)
    ])


def code_utility(tpot_s: float) -> float:
    """The reference code's utility: 100 for a 50 ms TPOT task, else 1 (papers.md 1.5)."""
    return 100.0 if abs(tpot_s - 0.05) < 1e-9 else 1.0


@register
@dataclass
class SLICE:
    """SLICE: utility-rate greedy selection + decode-mask rate control ([1]_, sections III-IV).

    On every arrival and completion, rank the unfinished arrived tasks (priority class first,
    then utility rate ``r_i = U_i TPOT_i``), select greedily while the cycle time
    :func:`t_period_s` fits the period, and rebuild the decode-mask matrix (rows = selected
    tasks, columns = the ``C = max v_i`` decodes of one cycle). Each engine iteration runs one
    column: the tasks with a one in it decode, newly selected tasks prefill their whole prompt
    in their first column.

    Parameters
    ----------
    period_s : float
        Cycle over which rates are counted (reference code: 1 s).
    ratio : float
        Feasibility limit ``T_period <= ratio * period_s`` (the code's ``--ratios``, default 1).
    stop_rule : {"break", "skip"}
        Greedy stop rule (papers.md decision 7): ``break`` (code) or ``skip`` (knapsack greedy).
    placement : {"contiguous", "spread"}
        Ones of a row: first ``v_i`` columns (code) or evenly spread (decision 10).
    pacing : {"work_conserving", "paced"}
        ``work_conserving`` restarts the cycle as soon as its columns are done (code);
        ``paced`` idles until ``period_s`` after the cycle start (decision 9).
    rank_by : {"class_then_rate", "rate"}
        Class order first (code, :data:`DEFAULT_CLASS_ORDER`; unknown labels rank last), or
        utility rate only (decision 6).
    utility_source : {"workload", "code"}
        ``U_i`` from ``Workload.utility``, or the code's rule (100 if TPOT = 50 ms else 1).
    max_tasks : int
        Cap on selected tasks (code: 16).
    max_decodes_per_cycle : int
        Cap on columns (code: 49); a task needing more decodes per cycle can never meet its TPOT.
    rate_rounding : {"ceil", "floor"}
        See :func:`rates_per_cycle`.
    infeasible : {"reject", "best_effort"}
        A task whose TPOT can never be met (``v_i > max_decodes_per_cycle`` or
        ``v_i l(1) > ratio * period_s``): reject it explicitly, or serve it after all others at
        the capped rate.
    typical_context_tokens : int
        Context per sequence used to read ``l(k)`` from the engine model.
    max_batch_tokens : int or None
        Token cap per iteration (``None``: the engine's).
    class_order : tuple of str
        Priority classes, best first.
    restart_on_replan : bool
        Restart the cycle at column 0 after every re-selection (``True``, as the code rebuilds
        the matrix), or continue at the current column of the new mask.
    record_decisions : bool
        Keep every selection instance on ``self.decisions`` (for the admission-MILP report).

    Notes
    -----
    Deviations and choices (papers/slice.md):

    * ``T_period`` is the paper's formula, not the code's off-by-one; with ``spread`` placement
      the cycle time is the exact column sum ``sum_j l(k_j)``.
    * Rates are rounded up by default (the code rounds down, which lets a full cycle run at
      ``floor(1/TPOT)`` tokens/s, e.g. 8 tok/s = 125 ms for a 120 ms TPOT).
    * KV: a task is selected only if the peak KV of all resident tasks plus its own
      (``prompt + output - 1``, the output length acting as a generation limit, as our Orca)
      fits; so nothing is ever preempted. Unselected running tasks wait with resident KV.
    * Prompts are prefilled whole (not chunked) in the task's first selected column, within the
      token cap; a prefill that does not fit waits for the next column. Prompts above the token
      cap are rejected. The prefill time is charged by the engine but ignored by ``T_period``
      (as in the paper, decision 11).
    * The column pointer restarts at column 0 on every re-selection.
    * If no task fits the period (e.g. all best-effort tasks) the first candidate that fits KV
      runs alone, so the scheduler never stalls.

    References
    ----------
    .. [1] P. Zhou et al., "SLO-Driven Scheduling for LLM Inference on Edge Computing
       Devices", arXiv:2510.18544, 2025; code willzhoupan/SLICE ``src/models/basellm.cpp``.
    """

    name: ClassVar[str] = "slice"
    period_s: float = 1.0
    ratio: float = 1.0
    stop_rule: Literal["break", "skip"] = "break"
    placement: Literal["contiguous", "spread"] = "contiguous"
    pacing: Literal["work_conserving", "paced"] = "work_conserving"
    rank_by: Literal["class_then_rate", "rate"] = "class_then_rate"
    utility_source: Literal["workload", "code"] = "workload"
    max_tasks: int = 16
    max_decodes_per_cycle: int = 49
    rate_rounding: Literal["ceil", "floor"] = "ceil"
    infeasible: Literal["reject", "best_effort"] = "reject"
    typical_context_tokens: int = 512
    max_batch_tokens: int | None = None
    class_order: tuple[str, ...] = DEFAULT_CLASS_ORDER
    restart_on_replan: bool = True
    record_decisions: bool = False
    # per-run state
    _latency_s: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _active: frozenset[int] = field(default=frozenset(), init=False, repr=False, compare=False)
    _rows: list[int] = field(default_factory=list, init=False, repr=False, compare=False)
    _mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), init=False,
                              repr=False, compare=False)
    _anchor_step: int = field(default=0, init=False, repr=False, compare=False)
    _cycle_start_s: float = field(default=0.0, init=False, repr=False, compare=False)
    _checked: set[int] = field(default_factory=set, init=False, repr=False, compare=False)
    _best_effort: set[int] = field(default_factory=set, init=False, repr=False, compare=False)
    _column: int = field(default=-1, init=False, repr=False, compare=False)
    decisions: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False,
                                            compare=False)

    def __post_init__(self) -> None:
        choices = {
            "stop_rule": ("break", "skip"), "placement": ("contiguous", "spread"),
            "pacing": ("work_conserving", "paced"), "rank_by": ("class_then_rate", "rate"),
            "utility_source": ("workload", "code"), "rate_rounding": ("ceil", "floor"),
            "infeasible": ("reject", "best_effort"),
        }
        for k, ok in choices.items():
            if getattr(self, k) not in ok:
                raise ValueError(f"SLICE.{k} must be one of {ok}, got {getattr(self, k)!r}")
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"SLICE.period_s must be finite and > 0, got {self.period_s!r}")
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise ValueError(f"SLICE.ratio must be finite and > 0, got {self.ratio!r}")
        for k in ("max_tasks", "max_decodes_per_cycle"):
            if getattr(self, k) < 1:
                raise ValueError(f"SLICE.{k} must be >= 1")
        if self.typical_context_tokens < 0:
            raise ValueError("SLICE.typical_context_tokens must be >= 0")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError("SLICE.max_batch_tokens must be >= 1 or None")
        self.class_order = tuple(self.class_order)

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the mask, the cycle position, the latency table and recorded decisions."""
        self._latency_s = None
        self._active = frozenset()
        self._rows = []
        self._mask = np.zeros((0, 0), bool)
        self._anchor_step = 0
        self._cycle_start_s = 0.0
        self._checked = set()
        self._best_effort = set()
        self._column = -1
        self.decisions = []

    @property
    def period_limit_s(self) -> float:
        """``ratio * period_s``: the bound on ``T_period``."""
        return self.ratio * self.period_s

    @property
    def mask(self) -> np.ndarray:
        """The current decode-mask matrix (rows follow :attr:`rows`)."""
        return self._mask

    @property
    def column(self) -> int:
        """Mask column run by the last non-idle plan (-1 before the first)."""
        return self._column

    @property
    def rows(self) -> list[int]:
        """Request ids of the mask's rows (the selected tasks)."""
        return list(self._rows)

    # -- helpers -------------------------------------------------------------------------
    def _budget(self, view: EngineView) -> int:
        cap = view.max_batch_tokens
        return cap if self.max_batch_tokens is None else min(cap, self.max_batch_tokens)

    def _utility(self, view: EngineView, rids: np.ndarray) -> np.ndarray:
        w = view.workload
        if self.utility_source == "code":
            return np.array([code_utility(float(w.tpot_slo_s[r])) for r in rids])
        return np.asarray(w.utility[rids], dtype=float)

    def _rates(self, view: EngineView, rids: np.ndarray) -> np.ndarray:
        return rates_per_cycle(view.workload.tpot_slo_s[rids], self.period_s,
                               rounding=self.rate_rounding)

    def _peak_blocks(self, view: EngineView, r: int) -> int:
        w = view.workload
        return -(-(int(w.prompt_tokens[r]) + int(w.output_tokens[r]) - 1) // view.kv_block_tokens)

    def _screen(self, view: EngineView) -> set[int]:
        """Classify newly seen waiting tasks; return those to reject now."""
        reject: set[int] = set()
        budget = self._budget(view)
        assert self._latency_s is not None
        l1 = float(self._latency_s[0])
        for r in view.waiting.tolist():
            if r in self._checked:
                continue
            self._checked.add(r)
            if int(view.workload.prompt_tokens[r]) > budget:
                reject.add(r)  # a whole prompt never fits one iteration
                continue
            v = int(self._rates(view, np.array([r]))[0])
            if v > self.max_decodes_per_cycle or v * l1 > self.period_limit_s + _EPS:
                if self.infeasible == "reject":
                    reject.add(r)
                else:
                    self._best_effort.add(r)
        return reject

    def _order(self, view: EngineView, cand: np.ndarray, util: np.ndarray,
               rates: np.ndarray) -> list[int]:
        w = view.workload
        tpot = np.minimum(w.tpot_slo_s[cand], self.period_s)
        rate_key = util * tpot  # U_i * TPOT_i (capped for tasks without a TPOT target)
        rank = {c: i for i, c in enumerate(self.class_order)}

        def key(j: int) -> tuple:
            r = int(cand[j])
            be = r in self._best_effort
            cls = rank.get(str(w.class_label[r]), len(rank)) if self.rank_by == "class_then_rate" else 0
            return (be, cls, -float(rate_key[j]), r)

        return sorted(range(cand.size), key=key)

    def _select(self, view: EngineView, active: frozenset[int]) -> None:
        cand = np.array(sorted(active), dtype=np.int64)
        util = self._utility(view, cand)
        rates = np.minimum(self._rates(view, cand), self.max_decodes_per_cycle)
        order = self._order(view, cand, util, rates)
        running = set(view.running.tolist())
        cap_blocks = view.engine.kv_capacity_tokens // view.kv_block_tokens
        peak = np.array([self._peak_blocks(view, int(r)) for r in cand], dtype=np.int64)
        is_new = np.array([int(r) not in running for r in cand])
        free = [cap_blocks - int(peak[~is_new].sum())]

        def fits(j: int) -> bool:
            return not is_new[j] or peak[j] <= free[0]

        def take(j: int) -> None:
            if is_new[j]:
                free[0] -= int(peak[j])

        assert self._latency_s is not None
        be = np.array([int(r) in self._best_effort for r in cand])
        feasible_order = [j for j in order if not be[j]]
        sel = greedy_select(feasible_order, rates, self._latency_s, self.period_limit_s,
                            max_tasks=self.max_tasks, stop_rule=self.stop_rule,
                            placement=self.placement, fits=fits, take=take)
        if not sel:  # nothing fits the period: run the best candidate alone (no stall)
            sel = [next(j for j in order if fits(j))]
        if self.record_decisions:
            self.decisions.append({
                "step": int(view.step), "now_s": float(view.now_s),
                "candidates": cand[~be].tolist(), "utility": util[~be].tolist(),
                "rates": rates[~be].tolist(),
                "kv_blocks": np.where(is_new, peak, 0)[~be].tolist(),
                "kv_budget_blocks": int(cap_blocks - int(peak[~is_new].sum())),
                "latency_s": self._latency_s.tolist(), "period_limit_s": self.period_limit_s,
                "max_tasks": self.max_tasks,
                "selected": [int(cand[j]) for j in sel if not be[j]],
                "selected_utility": float(sum(util[j] for j in sel if not be[j])),
            })
        self._rows = [int(cand[j]) for j in sel]
        self._mask = decode_mask(rates[sel], self.placement)

    def _column_batch(self, view: EngineView, col: int, budget: int) -> dict[int, int]:
        plan: dict[int, int] = {}
        members = [self._rows[i] for i in np.flatnonzero(self._mask[:, col]).tolist()]
        decodes = [r for r in members if view.num_generated[r] >= 1 and view.next_tokens(r) == 1]
        prefills = [r for r in members if r not in decodes]
        for r in decodes + prefills:
            n = view.next_tokens(r)
            if n <= budget:
                plan[r] = n
                budget -= n
        return plan

    def _repeat_until(self, view: EngineView, plan: dict[int, int], col: int) -> float:
        """Time before which every following step runs the same pure-decode column batch."""
        gen = view.num_generated
        if not all(t == 1 and view.next_tokens(r) == 1 and gen[r] >= 1 for r, t in plan.items()):
            return -math.inf
        if len(plan) != int(self._mask[:, col].sum()):
            return -math.inf
        c = self._mask.shape[1]
        same = (self._mask == self._mask[:, [col]]).all(axis=0)
        if self.pacing == "work_conserving":
            if same.all():
                return math.inf
            m = 1
            while same[(col + m) % c]:
                m += 1
        else:
            m = 1
            while col + m < c and same[col + m]:
                m += 1
        if m <= 1:
            return -math.inf
        rids = np.array(sorted(plan), dtype=np.int64)
        ctx0 = int((view.num_computed[rids] + 1).sum())
        dts = decode_step_times_s(view.engine, int(rids.size), ctx0, m)
        align = getattr(view.engine, "align_start_s", None)
        if align is not None:  # slotted engine: iterations start on the slot grid
            slot = float(view.engine.step_s)  # type: ignore[attr-defined]
            starts = (round(float(align(view.now_s)) / slot) + np.arange(m)) * slot
            ends = starts + dts
        else:
            ends = np.add.accumulate(np.concatenate(([view.now_s], dts)))[1:]
            starts = np.concatenate(([view.now_s], ends[:-1]))
        # strictly after the start of the m-th identical step, strictly before the next one
        return 0.5 * (float(starts[m - 1]) + float(ends[m - 1]))

    # -- policy --------------------------------------------------------------------------
    def plan(self, view: EngineView) -> StepPlan:
        """Re-select on arrival/completion, then run the current mask column."""
        if self._latency_s is None:
            self._latency_s = decode_latency_table_s(view.engine, self.max_tasks,
                                                     self.typical_context_tokens)
        reject = self._screen(view)
        active = frozenset(int(r) for r in (*view.waiting.tolist(), *view.running.tolist())
                           if int(r) not in reject)
        if not active:
            return StepPlan({}, reject=frozenset(reject))
        if active != self._active:
            c_old = self._mask.shape[1]
            pos_old = (int(view.step) - self._anchor_step) if c_old else 0
            if c_old and self.pacing == "work_conserving":
                pos_old %= c_old  # fast-forward may have run whole cycles since the anchor
            self._active = active
            self._select(view, active)
            if self.restart_on_replan or not c_old or pos_old >= c_old:
                self._anchor_step = int(view.step)
                self._cycle_start_s = float(view.now_s)
            else:  # continue the cycle at the same column of the new mask
                self._anchor_step = int(view.step) - pos_old % self._mask.shape[1]
        c = self._mask.shape[1]
        pos = int(view.step) - self._anchor_step
        if pos >= c:
            if self.pacing == "paced":
                boundary = self._cycle_start_s + self.period_s
                if view.now_s < boundary - _EPS:
                    return StepPlan({}, reject=frozenset(reject), wait_until_s=boundary)
                self._anchor_step = int(view.step)
                self._cycle_start_s = float(view.now_s)
                pos = 0
            else:
                self._anchor_step += c * (pos // c)
                pos %= c
        budget = self._budget(view)
        plan: dict[int, int] = {}
        for _ in range(c):
            plan = self._column_batch(view, pos, budget)
            if plan:
                break
            self._anchor_step -= 1  # an empty column takes no iteration
            pos = (pos + 1) % c
        if not plan:  # cannot happen with a non-empty selection; never stall anyway
            for r in self._rows:
                n = view.next_tokens(r)
                if n <= budget:
                    plan[r] = n
                    break
        self._column = pos
        repeat = -math.inf if reject else self._repeat_until(view, plan, pos)
        return StepPlan(plan, reject=frozenset(reject), repeat_until_s=repeat)
