"""Workload generators and transformations (every random choice takes a ``numpy.random.Generator``).

Building blocks
---------------
* arrivals: :func:`poisson_arrivals`, :func:`gamma_arrivals` (inter-arrival CV given);
* lengths: :class:`EmpiricalLengths` (joint resampling of a length table),
  :class:`LognormalLengths` (fitted to percentiles), :class:`FixedLengths`;
* SLO classes: :class:`SLOClass`, :func:`assign_slo_classes`, presets :data:`INTERACTIVE`,
  :func:`slice_classes`;
* :func:`synthetic` puts them together into a :class:`~slo_opt.request.Workload`.

Transformations of any workload (e.g. a trace from :mod:`slo_opt.workloads.traces`):
:func:`time_scale`, :func:`rescale_rate`, :func:`retime`, :func:`with_slo`, :func:`clip_lengths`,
:func:`window`. There is never a global seed: pass ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from slo_opt.request import SLO, Workload
from slo_opt.workloads.traces import _data_file, load_length_table

__all__ = [
    "INTERACTIVE",
    "EmpiricalLengths",
    "FixedLengths",
    "LengthDistribution",
    "LognormalLengths",
    "SLOClass",
    "arrival_rate_per_s",
    "assign_slo_classes",
    "clip_lengths",
    "gamma_arrivals",
    "poisson_arrivals",
    "rescale_rate",
    "retime",
    "slice_classes",
    "synthetic",
    "time_scale",
    "window",
    "with_slo",
]

_Z90 = 1.2815515655446004  # standard normal quantile at 0.9


# -- validation ---------------------------------------------------------------------------------


def _positive(name: str, x: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {x!r}")
    x = float(x)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return x


def _count(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{name} must be an int >= 0, got {n!r}")
    return int(n)


def _rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}"
        )
    return rng


# -- arrivals -----------------------------------------------------------------------------------


def poisson_arrivals(
    rate_per_s: float, n: int, rng: np.random.Generator, start_s: float = 0.0
) -> np.ndarray:
    """Arrival times of a Poisson process: ``start_s`` + cumulative exponential gaps.

    Parameters
    ----------
    rate_per_s : float
        Mean arrivals per second (> 0).
    n : int
        Number of arrivals (>= 0).
    rng : numpy.random.Generator
        Source of randomness.
    start_s : float
        Time origin; the first arrival is one gap after it.

    Returns
    -------
    numpy.ndarray
        ``n`` non-decreasing float times in seconds.
    """
    rate = _positive("rate_per_s", rate_per_s)
    n = _count("n", n)
    if not math.isfinite(start_s) or start_s < 0:
        raise ValueError(f"start_s must be finite and >= 0, got {start_s!r}")
    gaps = _rng(rng).exponential(1.0 / rate, size=n)
    return start_s + np.cumsum(gaps)


def gamma_arrivals(
    rate_per_s: float, cv: float, n: int, rng: np.random.Generator, start_s: float = 0.0
) -> np.ndarray:
    """Arrival times of a gamma renewal process (bursty for ``cv > 1``).

    Inter-arrival gaps are Gamma(shape ``k = 1/cv²``, scale ``1/(rate·k)``): mean
    ``1/rate_per_s`` and coefficient of variation ``cv``. ``cv = 1`` is Poisson; ``cv < 1``
    is smoother, ``cv > 1`` burstier (Azure code 2023 has CV ≈ 13).

    Parameters
    ----------
    rate_per_s : float
        Mean arrivals per second (> 0).
    cv : float
        Coefficient of variation of the gaps (> 0).
    n : int
        Number of arrivals (>= 0).
    rng : numpy.random.Generator
        Source of randomness.
    start_s : float
        Time origin; the first arrival is one gap after it.

    Returns
    -------
    numpy.ndarray
        ``n`` non-decreasing float times in seconds.
    """
    rate = _positive("rate_per_s", rate_per_s)
    cv = _positive("cv", cv)
    n = _count("n", n)
    if not math.isfinite(start_s) or start_s < 0:
        raise ValueError(f"start_s must be finite and >= 0, got {start_s!r}")
    k = 1.0 / cv**2
    gaps = _rng(rng).gamma(k, 1.0 / (rate * k), size=n)
    return start_s + np.cumsum(gaps)


# -- lengths ------------------------------------------------------------------------------------


class LengthDistribution:
    """Protocol-like base: ``sample(n, rng) -> (prompt_tokens, output_tokens)`` int64 arrays."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class FixedLengths(LengthDistribution):
    """Every request has the same prompt and output length (no randomness is consumed)."""

    prompt_tokens: int  # tokens per prompt (>= 1)
    output_tokens: int  # generated tokens per request (>= 1)

    def __post_init__(self) -> None:
        for k in ("prompt_tokens", "output_tokens"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{k} must be an int >= 1, got {v!r}")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` copies of the fixed lengths."""
        n = _count("n", n)
        return (np.full(n, self.prompt_tokens, dtype=np.int64),
                np.full(n, self.output_tokens, dtype=np.int64))


class EmpiricalLengths(LengthDistribution):
    """Resample (prompt, output) rows of a length table jointly, with replacement.

    Parameters
    ----------
    prompt_tokens, output_tokens : array_like
        Equal-length integer arrays (>= 1), one row per observed request.
    """

    def __init__(self, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> None:
        p = np.asarray(prompt_tokens)
        o = np.asarray(output_tokens)
        if p.ndim != 1 or p.shape != o.shape or p.size == 0:
            raise ValueError("prompt_tokens and output_tokens must be non-empty 1-D, equal length")
        for nm, a in (("prompt_tokens", p), ("output_tokens", o)):
            if a.dtype.kind not in "iuf" or np.any(a < 1) or np.any(a != np.round(a)):
                raise ValueError(f"{nm} must hold integers >= 1")
        self.prompt_tokens = p.astype(np.int64)
        self.output_tokens = o.astype(np.int64)
        self.prompt_tokens.setflags(write=False)
        self.output_tokens.setflags(write=False)

    def __len__(self) -> int:
        return int(self.prompt_tokens.size)

    def __repr__(self) -> str:
        return f"EmpiricalLengths({len(self)} rows)"

    @classmethod
    def from_file(cls, path: str) -> EmpiricalLengths:
        """From a sarathi/Vidur length CSV (see :func:`slo_opt.workloads.traces.load_length_table`)."""
        return cls(*load_length_table(path))

    @classmethod
    def from_workload(cls, workload: Workload) -> EmpiricalLengths:
        """The lengths of a workload (e.g. a trace) as a table."""
        return cls(workload.prompt_tokens, workload.output_tokens)

    @classmethod
    def default(cls) -> EmpiricalLengths:
        """The shipped ShareGPT table: 2,000 rows sampled from sarathi-serve's 8k-filtered stats.

        Llama-2 tokenizer; prompt mean 2,282 / median 1,592, output mean 437 / median 420
        tokens. Apache-2.0, see ``slo_opt/data/README.md``.
        """
        return cls.from_file(str(_data_file("sharegpt_lengths_2000.csv")))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows drawn uniformly with replacement (one ``rng.integers`` call)."""
        n = _count("n", n)
        idx = _rng(rng).integers(0, len(self), size=n)
        return self.prompt_tokens[idx], self.output_tokens[idx]


@dataclass(frozen=True)
class LognormalLengths(LengthDistribution):
    """Independent log-normal prompt and output lengths, rounded and clipped to ``[1, max]``.

    ``exp(N(mu, sigma²))`` per side. Build it from percentiles with :meth:`from_percentiles`.
    """

    prompt_mu: float  # mean of log(prompt tokens)
    prompt_sigma: float  # std of log(prompt tokens), >= 0
    output_mu: float  # mean of log(output tokens)
    output_sigma: float  # std of log(output tokens), >= 0
    max_prompt_tokens: int = 8192  # clip bound
    max_output_tokens: int = 4096  # clip bound

    def __post_init__(self) -> None:
        for k in ("prompt_mu", "output_mu"):
            if not math.isfinite(getattr(self, k)):
                raise ValueError(f"{k} must be finite")
        for k in ("prompt_sigma", "output_sigma"):
            v = getattr(self, k)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{k} must be finite and >= 0, got {v!r}")
        for k in ("max_prompt_tokens", "max_output_tokens"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{k} must be an int >= 1, got {v!r}")

    @classmethod
    def from_percentiles(
        cls,
        prompt: tuple[float, float],
        output: tuple[float, float],
        *,
        max_prompt_tokens: int = 8192,
        max_output_tokens: int = 4096,
    ) -> LognormalLengths:
        """Fit ``mu = log p50``, ``sigma = (log p90 - log p50) / z_0.9`` per side.

        Parameters
        ----------
        prompt, output : (float, float)
            ``(p50, p90)`` in tokens, ``1 <= p50 <= p90`` (equal means a point mass).
        max_prompt_tokens, max_output_tokens : int
            Clip bounds (percentiles below the bound are unaffected by clipping).

        Examples
        --------
        Azure-conv-like prompts with vicuna-13b outputs (LMSYS-Chat-1M as used by SSJF:
        p50 140, p90 397, filtered to < 512 tokens)::

            LognormalLengths.from_percentiles((1020, 2734), (140, 397), max_output_tokens=511)
        """

        def fit(nm: str, pq: tuple[float, float]) -> tuple[float, float]:
            p50, p90 = (float(v) for v in pq)
            if not (math.isfinite(p50) and math.isfinite(p90)) or p50 < 1 or p90 < p50:
                raise ValueError(f"{nm} percentiles need 1 <= p50 <= p90, got {pq!r}")
            return math.log(p50), (math.log(p90) - math.log(p50)) / _Z90

        pm, ps = fit("prompt", prompt)
        om, os_ = fit("output", output)
        return cls(pm, ps, om, os_, max_prompt_tokens, max_output_tokens)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Prompt lengths first, then output lengths (two ``rng.lognormal`` calls)."""
        n = _count("n", n)
        rng = _rng(rng)
        p = rng.lognormal(self.prompt_mu, self.prompt_sigma, size=n)
        o = rng.lognormal(self.output_mu, self.output_sigma, size=n)
        return (np.clip(np.rint(p), 1, self.max_prompt_tokens).astype(np.int64),
                np.clip(np.rint(o), 1, self.max_output_tokens).astype(np.int64))


# -- SLO classes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SLOClass:
    """A service class: its SLO, its utility weight and its share of the requests."""

    name: str  # class label written to Workload.class_label
    slo: SLO  # latency targets of its requests
    utility: float = 1.0  # weight in utility-weighted attainment (SLICE's U_i), >= 0
    share: float = 1.0  # fraction of requests in this class, in [0, 1]

    def __post_init__(self) -> None:
        if not isinstance(self.slo, SLO):
            raise ValueError(f"class {self.name!r}: slo must be an SLO, got {self.slo!r}")
        if not math.isfinite(self.utility) or self.utility < 0:
            raise ValueError(f"class {self.name!r}: utility must be finite and >= 0")
        if not math.isfinite(self.share) or not 0 <= self.share <= 1:
            raise ValueError(f"class {self.name!r}: share must be in [0, 1], got {self.share!r}")


#: Interactive chat (Vidur-Search: TTFT-P90 < 2 s, TBT-P99 < 200 ms), as one class.
INTERACTIVE = SLOClass("interactive", SLO(ttft_s=2.0, tpot_s=0.2))


def slice_classes(rt_share: float = 0.25, rt_utility: float = 100.0) -> tuple[SLOClass, SLOClass]:
    """SLICE's real-time / non-real-time mix (our documented choice; the paper leaves it open).

    ``rt``: TTFT 0.5 s, TPOT 50 ms, utility ``rt_utility``; ``nrt``: TTFT 2 s, TPOT 120 ms,
    utility 1. TPOT values and U_RT = 100 follow the reference code; TTFTs and the 1:3 mix are
    our picks (research notes, SLICE decisions 5, 13, 14).
    """
    if not 0 <= rt_share <= 1:
        raise ValueError(f"rt_share must be in [0, 1], got {rt_share!r}")
    return (SLOClass("rt", SLO(ttft_s=0.5, tpot_s=0.05), rt_utility, rt_share),
            SLOClass("nrt", SLO(ttft_s=2.0, tpot_s=0.12), 1.0, 1.0 - rt_share))


def _check_classes(classes: Sequence[SLOClass]) -> tuple[SLOClass, ...]:
    cls = tuple(classes)
    if not cls:
        raise ValueError("classes must not be empty")
    for c in cls:
        if not isinstance(c, SLOClass):
            raise ValueError(f"classes must be SLOClass objects, got {c!r}")
    names = [c.name for c in cls]
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    total = math.fsum(c.share for c in cls)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"class shares must sum to 1, got {total!r} ({names})")
    return cls


def assign_slo_classes(
    n: int, classes: Sequence[SLOClass], rng: np.random.Generator, *, exact: bool = False
) -> dict[str, np.ndarray]:
    """Draw a class per request and return the matching Workload columns.

    Parameters
    ----------
    n : int
        Number of requests.
    classes : sequence of SLOClass
        Shares must sum to 1 (tolerance 1e-9).
    rng : numpy.random.Generator
        Source of randomness.
    exact : bool
        ``False``: i.i.d. draws with probabilities ``share``. ``True``: exactly
        ``round(share·n)`` requests per class (largest remainder), in random order.

    Returns
    -------
    dict
        ``ttft_slo_s, tpot_slo_s, e2e_slo_s, utility`` (float arrays) and ``class_label``
        (object array), ready for ``Workload.from_arrays(**cols)`` / ``Workload.replace``.
    """
    n = _count("n", n)
    cls = _check_classes(classes)
    rng = _rng(rng)
    shares = np.array([c.share for c in cls])
    if exact:
        raw = shares * n
        counts = np.floor(raw).astype(np.int64)
        rest = n - int(counts.sum())
        counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
        k = rng.permutation(np.repeat(np.arange(len(cls)), counts))
    else:
        k = rng.choice(len(cls), size=n, p=shares / shares.sum())

    def pick(values: list) -> np.ndarray:
        return np.asarray(values, dtype=object if isinstance(values[0], str) else float)[k]

    return {
        "ttft_slo_s": pick([c.slo.ttft_s for c in cls]),
        "tpot_slo_s": pick([c.slo.tpot_s for c in cls]),
        "e2e_slo_s": pick([c.slo.e2e_s for c in cls]),
        "utility": pick([float(c.utility) for c in cls]),
        "class_label": pick([c.name for c in cls]),
    }


# -- composing a workload -----------------------------------------------------------------------


def _arrivals(
    n: int, rate_per_s: float, rng: np.random.Generator, arrival: str, cv: float
) -> np.ndarray:
    if arrival == "poisson":
        return poisson_arrivals(rate_per_s, n, rng)
    if arrival == "gamma":
        return gamma_arrivals(rate_per_s, cv, n, rng)
    raise ValueError(f"arrival must be 'poisson' or 'gamma', got {arrival!r}")


def synthetic(
    n: int,
    rate_per_s: float,
    lengths: LengthDistribution,
    rng: np.random.Generator,
    *,
    arrival: Literal["poisson", "gamma"] = "poisson",
    cv: float = 1.0,
    classes: SLO | Sequence[SLOClass] | None = None,
    name: str = "synthetic",
) -> Workload:
    """A synthetic workload: renewal arrivals, sampled lengths, optional SLO classes.

    Parameters
    ----------
    n : int
        Number of requests (>= 0).
    rate_per_s : float
        Mean arrival rate (> 0).
    lengths : LengthDistribution
        E.g. ``EmpiricalLengths.default()``, ``LognormalLengths.from_percentiles(...)``.
    rng : numpy.random.Generator
        Consumed in this order: arrivals, lengths, classes.
    arrival : {"poisson", "gamma"}
        Inter-arrival law; ``"gamma"`` uses ``cv``.
    cv : float
        Coefficient of variation of gamma inter-arrivals (> 0; ignored for Poisson).
    classes : SLO or sequence of SLOClass, optional
        One SLO for every request, or a class mix (see :func:`assign_slo_classes`). ``None``:
        no SLO (``inf``).
    name : str
        Workload name.

    Returns
    -------
    Workload
    """
    n = _count("n", n)
    rate = _positive("rate_per_s", rate_per_s)
    cv = _positive("cv", cv)
    if not callable(getattr(lengths, "sample", None)):
        raise ValueError(f"lengths must have a sample(n, rng) method, got {lengths!r}")
    rng = _rng(rng)
    t = _arrivals(n, rate, rng, arrival, cv)
    p, o = lengths.sample(n, rng)
    w = Workload.from_arrays(t, p, o, name=name)
    return w if classes is None else with_slo(w, classes, rng)


# -- transformations ----------------------------------------------------------------------------


def _rebuild(w: Workload, name: str | None = None, **cols: np.ndarray) -> Workload:
    """``w`` with some columns replaced; its prefix ids are kept (clipped to shorter lengths)."""
    base = w.columns()
    base.update(cols)
    out = Workload.from_arrays(name=w.name if name is None else name, **base)
    if w.prefix_ids is None:
        return out
    return out.with_prefix_ids(w.prefix_ids.clip(out.work_tokens))


def arrival_rate_per_s(workload: Workload) -> float:
    """Mean arrival rate ``(n - 1) / (last - first arrival)``; needs >= 2 distinct arrival times."""
    a = workload.arrival_s
    if a.size < 2 or a[-1] <= a[0]:
        raise ValueError("the arrival rate needs at least 2 requests with distinct arrival times")
    return float((a.size - 1) / (a[-1] - a[0]))


def time_scale(workload: Workload, factor: float) -> Workload:
    """Multiply every arrival time by ``factor`` (> 1 stretches, i.e. lowers the rate).

    The same transformation as Vidur's ``time_scale_factor``; order and ties are preserved
    (multiplication by a positive float is monotone).
    """
    f = _positive("factor", factor)
    return _rebuild(workload, arrival_s=workload.arrival_s * f)


def rescale_rate(workload: Workload, target_rate_per_s: float) -> Workload:
    """Time-scale a workload so that :func:`arrival_rate_per_s` equals ``target_rate_per_s``.

    Lengths, SLOs and the order of requests are unchanged; arrival gaps are scaled by
    ``current_rate / target_rate_per_s`` (the first arrival too, so 0 stays 0).
    """
    target = _positive("target_rate_per_s", target_rate_per_s)
    return time_scale(workload, arrival_rate_per_s(workload) / target)


def retime(
    workload: Workload,
    rate_per_s: float,
    rng: np.random.Generator,
    *,
    arrival: Literal["poisson", "gamma"] = "poisson",
    cv: float = 1.0,
) -> Workload:
    """Replace the arrival times with fresh Poisson/gamma ones, keeping rows in order.

    Useful to re-time a trace's lengths at a chosen load and burstiness.
    """
    rate = _positive("rate_per_s", rate_per_s)
    cv = _positive("cv", cv)
    t = _arrivals(len(workload), rate, _rng(rng), arrival, cv)
    return _rebuild(workload, arrival_s=t)


def with_slo(
    workload: Workload,
    slo: SLO | SLOClass | Sequence[SLOClass],
    rng: np.random.Generator | None = None,
    *,
    exact: bool = False,
) -> Workload:
    """Set the SLO columns: one :class:`SLO` for all, or a class mix drawn with ``rng``.

    Parameters
    ----------
    workload : Workload
        Any workload.
    slo : SLO or SLOClass or sequence of SLOClass
        An SLO (utility and class label are kept), one class (applied to all, its share
        ignored) or a mix whose shares sum to 1.
    rng : numpy.random.Generator, optional
        Needed for a mix of more than one class.
    exact : bool
        Exact class counts (see :func:`assign_slo_classes`).
    """
    n = len(workload)
    if isinstance(slo, SLO):
        return _rebuild(workload, ttft_slo_s=np.full(n, slo.ttft_s),
                        tpot_slo_s=np.full(n, slo.tpot_s), e2e_slo_s=np.full(n, slo.e2e_s))
    if isinstance(slo, SLOClass):
        slo = (SLOClass(slo.name, slo.slo, slo.utility, 1.0),)
    classes = _check_classes(slo)
    if len(classes) == 1:
        rng = np.random.default_rng(0)  # nothing random: every row gets the only class
    elif rng is None:
        raise ValueError("with_slo needs an rng to draw a mix of SLO classes")
    return _rebuild(workload, **assign_slo_classes(n, classes, rng, exact=exact))  # type: ignore[arg-type]


def clip_lengths(
    workload: Workload,
    max_prompt_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> Workload:
    """Clip prompt and output lengths to at most the given bounds (``None``: no bound)."""
    cols = {}
    for nm, bound, arr in (("max_prompt_tokens", max_prompt_tokens, workload.prompt_tokens),
                           ("max_output_tokens", max_output_tokens, workload.output_tokens)):
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, int | np.integer) or bound < 1:
            raise ValueError(f"{nm} must be an int >= 1 or None, got {bound!r}")
        cols[nm.replace("max_", "")] = np.minimum(arr, bound)
    return _rebuild(workload, **cols)


def window(workload: Workload, start_s: float, duration_s: float) -> Workload:
    """Requests arriving in ``[start_s, start_s + duration_s)``, with ``start_s`` moved to 0.

    Time 0 of the result is the window start (not the first request), so the load over the
    window is preserved. Rows keep their relative order and are renumbered ``0..k-1``.
    """
    if not math.isfinite(start_s) or start_s < 0:
        raise ValueError(f"start_s must be finite and >= 0, got {start_s!r}")
    dur = _positive("duration_s", duration_s)
    a = workload.arrival_s
    lo, hi = np.searchsorted(a, [start_s, start_s + dur], side="left")
    cols = {k: v[lo:hi] for k, v in workload.columns().items()}
    cols["arrival_s"] = np.maximum(cols["arrival_s"] - start_s, 0.0)
    out = Workload.from_arrays(name=workload.name, **cols)
    pid = workload.prefix_ids
    return out if pid is None else out.with_prefix_ids(pid.subset(np.arange(lo, hi)))
