"""The solver layer's data types: :class:`Instance`, :class:`LinearModel`, :class:`SolveResult`
and :func:`solve`.

The split follows OMLT (DESIGN.md section 4): an :class:`Instance` is data (a workload on a
finite slot grid of a :class:`~slo_opt.models.slot.SlotEngine`), a :class:`Formulation` encodes
it, and a back-end (``solvers/backends.py``) solves the encoding. Result semantics follow
Pyomo: the *incumbent* (objective of a feasible solution) is never confused with the *bound*
(a proven bound: an upper bound for maximisation, never below the optimum).

Notes
-----
Deviation from DESIGN.md section 4: ``Formulation.build`` returns a :class:`LinearModel` (a
sparse matrix built with numpy/scipy), not a ``pyo.ConcreteModel`` or ``cp.Problem``. Building
Pyomo expressions for thousands of requests dominated solve time (research/optimization.md
3.1: 0.09 s for a CSC build vs 2.8 s with ``sum()`` at 180k nonzeros); the Pyomo and cvxpy
back-ends translate the same matrix, so all three back-ends see one model and ``relax=True``
relaxes *that* model (the LP bound cannot drift from the MILP).
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedule import ARRIVAL_EPS_S, Schedule

__all__ = [
    "Formulation",
    "Instance",
    "LinearModel",
    "NotRepresentable",
    "SolveResult",
    "Status",
    "first_slots",
    "slot_deadlines",
    "solve",
]


class Status(enum.Enum):
    """Outcome of a solve (one mapping per back-end lives in ``backends.py``)."""

    OPTIMAL = "optimal"  # proven optimal within the gap tolerance
    FEASIBLE = "feasible"  # time or gap limit hit with an incumbent
    INFEASIBLE = "infeasible"
    NO_SOLUTION = "no_solution"  # limit hit, nothing found
    #: the solver's answer contradicts itself beyond tolerance (a dual bound on the wrong side
    #: of its incumbent): the incumbent (verified feasible) is kept, no bound is reported
    NUMERICAL = "numerical_trouble"
    ERROR = "error"


class NotRepresentable(ValueError):
    """A schedule cannot be pinned into a formulation (the message says why)."""


@dataclass(frozen=True)
class Instance:
    """A finite workload on a finite slot grid.

    Parameters
    ----------
    workload : Workload
        The requests.
    engine : SlotEngine
        The slotted reference engine; slot ``t`` covers ``[t*step_s, (t+1)*step_s)``.
    num_slots : int or None
        Horizon in slots. ``None`` picks :meth:`default_num_slots`, which covers every finite
        SLO deadline and the makespan of any work-conserving schedule.
    """

    workload: Workload
    engine: SlotEngine
    num_slots: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workload, Workload):
            raise TypeError(f"workload must be a Workload, got {type(self.workload).__name__}")
        for k in ("step_s", "max_batch_tokens", "kv_capacity_tokens"):
            if not hasattr(self.engine, k):
                raise TypeError(f"engine must be a SlotEngine-like model (missing {k!r})")
        if int(getattr(self.engine, "kv_block_tokens", 1)) != 1:
            raise ValueError("offline formulations need token-exact KV: use kv_block_tokens=1")
        if self.num_slots is None:
            object.__setattr__(self, "num_slots", self.default_num_slots(self.workload, self.engine))
        if not isinstance(self.num_slots, int | np.integer) or self.num_slots < 0:
            raise ValueError(f"num_slots must be an int >= 0, got {self.num_slots!r}")
        object.__setattr__(self, "num_slots", int(self.num_slots))

    @property
    def n(self) -> int:
        """Number of requests."""
        return len(self.workload)

    @staticmethod
    def default_num_slots(workload: Workload, engine: SlotEngine) -> int:
        """Slots covering the last arrival plus all work (one token per busy slot at least).

        Any work-conserving schedule finishes within this horizon, because a request that fits
        the KV cache alone always makes progress of at least one token per slot.
        """
        if len(workload) == 0:
            return 0
        r = first_slots(workload, engine.step_s)
        return int(r.max() + workload.work_tokens.sum() + 1)


def first_slots(workload: Workload, step_s: float) -> np.ndarray:
    """Per request, the first slot it may compute in (the simulator's visibility rule).

    A request is visible to a step starting at ``k*step_s`` iff
    ``arrival_s <= k*step_s + ARRIVAL_EPS_S``.
    """
    a = np.asarray(workload.arrival_s, float)
    k = np.maximum(np.ceil(a / step_s - 1e-9), 0).astype(np.int64)
    # exact correction of the float estimate against the simulator's test
    k = np.where((k > 0) & (a <= (k - 1) * step_s + ARRIVAL_EPS_S), k - 1, k)
    k = np.where(a > k * step_s + ARRIVAL_EPS_S, k + 1, k)
    return k


def slot_deadlines(workload: Workload, step_s: float, tol_s: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latest first-token slot, latest finish slot and TPOT slack in slots, per request.

    Uses the metrics module's definitions on the slot grid (a step in slot ``t`` ends at
    ``t*step_s + step_s``): TTFT is met iff ``(s+1)D - a <= ttft + tol``; e2e iff
    ``(f+1)D - a <= e2e + tol``; TPOT iff ``(f - s) D / (O - 1) <= tpot + tol``.

    Returns
    -------
    (ttft_slot, e2e_slot, tpot_gap_slots)
        ``ttft_slot``/``e2e_slot`` are the latest allowed slots (``-1``: none; a huge value
        for ``inf``); ``tpot_gap_slots`` is the largest allowed ``f - s``.
    """
    from slo_opt.metrics import SLO_TOL_S

    tol = SLO_TOL_S if tol_s is None else tol_s
    big = np.iinfo(np.int64).max // 4
    a = np.asarray(workload.arrival_s, float)
    D = float(step_s)

    def latest(limit: np.ndarray) -> np.ndarray:
        out = np.full(a.size, big, np.int64)
        fin = np.isfinite(limit)
        if fin.any():
            k = np.floor((a[fin] + limit[fin] + tol) / D).astype(np.int64) - 1
            # exact correction against the metric's float expression ((k+1)D - a <= limit + tol)
            for _ in range(2):
                ok = (k * D + D) - a[fin] <= limit[fin] + tol
                k = np.where(ok, k, k - 1)
            nxt = ((k + 1) * D + D) - a[fin] <= limit[fin] + tol
            k = np.where(nxt, k + 1, k)
            out[fin] = np.maximum(k, -1)
        return out

    ttft = latest(np.asarray(workload.ttft_slo_s, float))
    e2e = latest(np.asarray(workload.e2e_slo_s, float))
    O = np.asarray(workload.output_tokens, np.int64)
    tp = np.asarray(workload.tpot_slo_s, float)
    gap = np.full(a.size, big, np.int64)
    m = (O > 1) & np.isfinite(tp)
    if m.any():
        lim = (tp[m] + tol) * (O[m] - 1)
        g = np.floor(lim / D).astype(np.int64)
        for _ in range(2):
            g = np.where(g * D / (O[m] - 1) <= tp[m] + tol, g, g - 1)
        g = np.where((g + 1) * D / (O[m] - 1) <= tp[m] + tol, g + 1, g)
        gap[m] = g
    return ttft, e2e, gap


@dataclass(eq=False)
class LinearModel:
    """A mixed-integer linear program in sparse triplet form, ``lb <= A x <= ub``.

    Columns and rows are appended with :meth:`add_cols` / :meth:`add_rows`; ``fix`` may append
    more and change bounds. ``info`` holds formulation-specific index maps.
    """

    sense: Literal["max", "min"] = "max"
    obj_offset: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    _c: list[np.ndarray] = field(default_factory=list)
    _lb: list[np.ndarray] = field(default_factory=list)
    _ub: list[np.ndarray] = field(default_factory=list)
    _int: list[np.ndarray] = field(default_factory=list)
    _rows: list[np.ndarray] = field(default_factory=list)
    _cols: list[np.ndarray] = field(default_factory=list)
    _vals: list[np.ndarray] = field(default_factory=list)
    _rlb: list[np.ndarray] = field(default_factory=list)
    _rub: list[np.ndarray] = field(default_factory=list)
    num_cols: int = 0
    num_rows: int = 0
    _frozen: dict[str, Any] | None = None

    def add_cols(self, n: int, *, lb: Any = 0.0, ub: Any = math.inf, cost: Any = 0.0,
                 integer: bool | np.ndarray = False) -> np.ndarray:
        """Append ``n`` columns; returns their indices."""
        n = int(n)
        idx = np.arange(self.num_cols, self.num_cols + n, dtype=np.int64)
        self._c.append(np.broadcast_to(np.asarray(cost, float), (n,)).copy())
        self._lb.append(np.broadcast_to(np.asarray(lb, float), (n,)).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, float), (n,)).copy())
        self._int.append(np.broadcast_to(np.asarray(integer, bool), (n,)).copy())
        self.num_cols += n
        self._frozen = None
        return idx

    def add_rows(self, rows: np.ndarray, cols: np.ndarray, vals: Any, lb: Any, ub: Any,
                 num: int) -> np.ndarray:
        """Append ``num`` rows given triplets with *local* row ids ``0..num-1``."""
        num = int(num)
        base = self.num_rows
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        self._rows.append(rows + base)
        self._cols.append(cols)
        self._vals.append(np.broadcast_to(np.asarray(vals, float), rows.shape).copy())
        self._rlb.append(np.broadcast_to(np.asarray(lb, float), (num,)).copy())
        self._rub.append(np.broadcast_to(np.asarray(ub, float), (num,)).copy())
        self.num_rows += num
        self._frozen = None
        return np.arange(base, base + num, dtype=np.int64)

    def add_entries(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Add matrix entries to existing rows and columns (global ids)."""
        self._arrays()
        self._rows.append(np.asarray(rows, np.int64))
        self._cols.append(np.asarray(cols, np.int64))
        self._vals.append(np.asarray(vals, float))
        self._frozen = None

    def _arrays(self) -> dict[str, Any]:
        if self._frozen is None:
            def cat(parts: list[np.ndarray], dt: Any) -> np.ndarray:
                return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

            self._frozen = {
                "c": cat(self._c, float), "lb": cat(self._lb, float), "ub": cat(self._ub, float),
                "integer": cat(self._int, bool), "rows": cat(self._rows, np.int64),
                "cols": cat(self._cols, np.int64), "vals": cat(self._vals, float),
                "rlb": cat(self._rlb, float), "rub": cat(self._rub, float),
            }
            # keep one block per list so later edits (fix) stay cheap
            for name, key in (("_c", "c"), ("_lb", "lb"), ("_ub", "ub"), ("_int", "integer"),
                              ("_rows", "rows"), ("_cols", "cols"), ("_vals", "vals"),
                              ("_rlb", "rlb"), ("_rub", "rub")):
                setattr(self, name, [self._frozen[key]])
        return self._frozen

    @property
    def c(self) -> np.ndarray:
        """Objective coefficients."""
        return self._arrays()["c"]

    @property
    def col_lb(self) -> np.ndarray:
        """Column lower bounds (mutable view: ``fix`` writes here)."""
        return self._arrays()["lb"]

    @property
    def col_ub(self) -> np.ndarray:
        """Column upper bounds (mutable view)."""
        return self._arrays()["ub"]

    @property
    def integer(self) -> np.ndarray:
        """Integrality flags (mutable view)."""
        return self._arrays()["integer"]

    @property
    def row_lb(self) -> np.ndarray:
        """Row lower bounds."""
        return self._arrays()["rlb"]

    @property
    def row_ub(self) -> np.ndarray:
        """Row upper bounds."""
        return self._arrays()["rub"]

    def matrix(self, fmt: str = "csc") -> Any:
        """The constraint matrix as a scipy sparse matrix (duplicates summed)."""
        import scipy.sparse as sp

        a = self._arrays()
        m = sp.coo_matrix((a["vals"], (a["rows"], a["cols"])),
                          shape=(self.num_rows, self.num_cols))
        return m.asformat(fmt)

    @property
    def nnz(self) -> int:
        """Stored nonzeros (before summing duplicates)."""
        return int(self._arrays()["vals"].size)

    def trivial_bound(self) -> float:
        """A bound from column bounds alone (for a limit hit before the root LP)."""
        c, lb, ub = self.c, self.col_lb, self.col_ub
        best = np.maximum(c * lb, c * ub) if self.sense == "max" else np.minimum(c * lb, c * ub)
        best = np.where(c == 0, 0.0, best)
        return float(best.sum() + self.obj_offset)


@dataclass(frozen=True, eq=False)
class SolveResult:
    """What a solve returns.

    Attributes
    ----------
    status : Status
    incumbent : float or None
        Objective of ``schedule`` (of the best solution found), in the formulation's units.
    bound : float or None
        Proven bound (upper bound for ``max``), never on the wrong side of the optimum.
    schedule : Schedule or None
        Extracted schedule (``None`` for relaxations and bound-only formulations).
    wall_s : float
        Total wall time (build + solve + extract).
    mip_gap : float or None
        ``|bound - incumbent| / max(|incumbent|, 1e-9)`` when both exist.
    build_s, solve_s : float
        Model construction and back-end time.
    backend : str
    message : str
    values : numpy.ndarray or None
        Column values of the incumbent (formulation-specific meaning).
    """

    status: Status
    incumbent: float | None
    bound: float | None
    schedule: Schedule | None
    wall_s: float
    mip_gap: float | None = None
    build_s: float = 0.0
    solve_s: float = 0.0
    backend: str = ""
    message: str = ""
    values: np.ndarray | None = None
    size: dict[str, int] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        """An incumbent exists."""
        return (self.status in (Status.OPTIMAL, Status.FEASIBLE, Status.NUMERICAL)
                and self.incumbent is not None)


@runtime_checkable
class Formulation(Protocol):
    """Encoding of an :class:`Instance` as a :class:`LinearModel`."""

    name: ClassVar[str]
    SENSE: ClassVar[Literal["max", "min"]]
    EXACT: ClassVar[bool]  # False: relaxation-only (a bound, never a schedule)
    MIP: ClassVar[bool]  # needs an integer-capable back-end

    def build(self, inst: Instance) -> LinearModel:
        """Encode the instance."""
        ...

    def fix(self, model: LinearModel, schedule: Schedule, inst: Instance) -> None:
        """Pin a schedule's decisions (OMLT's ``inputs[0].fix``)."""
        ...

    def extract(self, model: LinearModel, values: np.ndarray, inst: Instance) -> Schedule:
        """Turn column values into a :class:`Schedule`."""
        ...


def solve(
    f: Formulation,
    inst: Instance,
    *,
    fix: Schedule | None = None,
    relax: bool = False,
    time_limit_s: float = 60.0,
    rel_gap: float = 1e-6,
    backend: str = "highs",
    hard_timeout_s: float | None = None,
    threads: int = 1,
    warm_start: Schedule | None = None,
) -> SolveResult:
    """Build, optionally pin or relax, solve and extract.

    Parameters
    ----------
    f : Formulation
    inst : Instance
    fix : Schedule, optional
        Pin this schedule (fix-and-solve cross-check).
    relax : bool
        Drop integrality of the *same* model (its LP bound).
    time_limit_s : float
        Solver time limit (``0`` is allowed: returns at once with a bound).
    rel_gap : float
        Relative MIP gap at which the solver may stop and report ``OPTIMAL``.
    backend : {"highs", "pyomo", "cvxpy"}
        See ``solvers/backends.py``.
    hard_timeout_s : float, optional
        Run the back-end in a child process killed after this many seconds (HiGHS#2226:
        ``time_limit`` is not honoured in some presolve loops).
    threads : int
        Solver threads (HiGHS' tree search is serial; prefer processes on 2 cores).
    warm_start : Schedule, optional
        A feasible schedule (e.g. the best heuristic's) given to HiGHS as a MIP start, so the
        incumbent is never worse than it (research/optimization.md 5(e) rule 4). Preempted
        requests of the start are treated as unserved.
    """
    from slo_opt.solvers import backends

    if not (time_limit_s >= 0):
        raise ValueError(f"time_limit_s must be >= 0, got {time_limit_s!r}")
    if not (rel_gap >= 0):
        raise ValueError(f"rel_gap must be >= 0, got {rel_gap!r}")
    t0 = time.perf_counter()
    model = f.build(inst)
    if fix is not None:
        f.fix(model, fix, inst)
    if relax:
        model.integer[:] = False
        model.info.setdefault("lp_solver", "ipm")  # simplex stalls on these degenerate LPs
    build_s = time.perf_counter() - t0
    if model.info.get("infeasible"):  # the formulation proved infeasibility while building
        return SolveResult(status=Status.INFEASIBLE, incumbent=None, bound=None, schedule=None,
                           wall_s=time.perf_counter() - t0, build_s=build_s, backend=backend,
                           message=str(model.info["infeasible"]))
    if build_s >= time_limit_s > 0:
        # the limit is spent before the back-end starts: the column bounds' bound, at once
        return SolveResult(status=Status.NO_SOLUTION, incumbent=None,
                           bound=model.trivial_bound(), schedule=None,
                           wall_s=time.perf_counter() - t0, build_s=build_s, backend=backend,
                           message=f"time limit {time_limit_s:g} s spent building the model "
                                   f"({build_s:.2f} s); bound from column bounds only",
                           size={"cols": model.num_cols, "rows": model.num_rows,
                                 "nnz": model.nnz, "integer_cols": int(model.integer.sum())})
    start = None
    if warm_start is not None and not relax and fix is None:
        m2 = f.build(inst)
        f.fix(m2, warm_start, inst, drop_preempted=True)  # type: ignore[call-arg]
        pinned = backends.run(m2, backend="highs", time_limit_s=min(10.0, time_limit_s),
                              rel_gap=rel_gap)
        if pinned.values is not None and pinned.values.size == model.num_cols:
            start = pinned.values
    raw = backends.run(model, backend=backend, time_limit_s=time_limit_s, rel_gap=rel_gap,
                       hard_timeout_s=hard_timeout_s, threads=threads, start=start)
    schedule = None
    if raw.values is not None and f.EXACT and not relax:
        schedule = f.extract(model, raw.values, inst)
    size = {"cols": model.num_cols, "rows": model.num_rows, "nnz": model.nnz,
            "integer_cols": int(model.integer.sum())}
    gap = None
    if raw.incumbent is not None and raw.bound is not None:
        gap = abs(raw.bound - raw.incumbent) / max(abs(raw.incumbent), 1e-9)
    return SolveResult(
        status=raw.status, incumbent=raw.incumbent, bound=raw.bound, schedule=schedule,
        wall_s=time.perf_counter() - t0, mip_gap=gap, build_s=build_s, solve_s=raw.solve_s,
        backend=backend, message=raw.message, values=raw.values, size=size,
    )
