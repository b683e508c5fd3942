"""Affine (plus one convex hinge) step-time model, fitted by least squares to profile rows.

The step time of a :class:`~slo_opt.engine.BatchShape` with ``P = prefill_tokens``,
``B = decode_seqs``, ``C = decode_context_tokens`` is::

    T = c0_s + c_prefill_s * P + c_prefill_sq_s * Q + c_decode_s * B + c_ctx_s * C
        + c_knee_s * max(0, P + B - knee_tokens)

with the prefill attention feature ``Q = P * prefill_context_tokens / max(prefill_seqs, 1)``.
For ``n`` equal chunks of ``p`` tokens after ``c`` cached tokens, ``Q = n * p * (c + p)``, the
QK^T/AV work of the chunks (for a fresh prompt of length ``p``: ``p**2``, DistServe's
quadratic term). The hinge charges the compute-bound regime: below ``knee_tokens`` tokens a
step is dominated by reading the weights (``c0_s``), above it by matrix FLOPs. All
coefficients are >= 0, so ``T`` is convex and piecewise-linear in the batch fields and can be
used verbatim as a MILP surrogate (:meth:`LinearEngineModel.linear_surrogate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.models.table import ProfileRow

__all__ = ["FitReport", "LinearEngineModel", "ape_summary", "features"]

KNEE_CANDIDATES = (0, 64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


@dataclass(frozen=True, slots=True)
class LinearEngineModel:
    """Affine step-time model (see module docstring).

    Parameters
    ----------
    name : str
        Identifier, ``"<gpu>/<model>"``.
    c0_s, c_prefill_s, c_prefill_sq_s, c_decode_s, c_ctx_s, c_knee_s : float
        Coefficients in seconds (per token / per sequence / per token-pair), all >= 0.
    knee_tokens : int
        Token count where the hinge starts (0 with ``c_knee_s = 0`` disables it).
    kv_capacity_tokens, kv_block_tokens, max_batch_tokens, kv_bytes_per_token,
    host_bandwidth_bytes_per_s
        The :class:`~slo_opt.engine.EngineModel` attributes.
    """

    name: str
    c0_s: float
    c_prefill_s: float = 0.0
    c_prefill_sq_s: float = 0.0
    c_decode_s: float = 0.0
    c_ctx_s: float = 0.0
    c_knee_s: float = 0.0
    knee_tokens: int = 0
    kv_capacity_tokens: int = 16384
    kv_block_tokens: int = 16
    max_batch_tokens: int = 8192
    kv_bytes_per_token: int = 131072
    host_bandwidth_bytes_per_s: float = 25e9
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        coeffs = (self.c0_s, self.c_prefill_s, self.c_prefill_sq_s, self.c_decode_s,
                  self.c_ctx_s, self.c_knee_s)
        if not all(np.isfinite(c) and c >= 0 for c in coeffs) or self.c0_s <= 0:
            raise ValueError(f"{self.name}: coefficients must be finite, >= 0, c0_s > 0; "
                             f"got {coeffs}")
        if self.knee_tokens < 0:
            raise ValueError("knee_tokens must be >= 0")
        if self.kv_block_tokens < 1 or self.kv_capacity_tokens % self.kv_block_tokens:
            raise ValueError("kv_capacity_tokens must be a positive multiple of kv_block_tokens")
        if self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be >= 1")

    @property
    def coefficients(self) -> np.ndarray:
        """``[c0, c_prefill, c_prefill_sq, c_decode, c_ctx, c_knee]`` in seconds."""
        return np.array([self.c0_s, self.c_prefill_s, self.c_prefill_sq_s, self.c_decode_s,
                         self.c_ctx_s, self.c_knee_s])

    def step_time_s(self, batch: BatchShape) -> float:
        """Seconds for one iteration (0 for an empty batch)."""
        p, b = batch.prefill_tokens, batch.decode_seqs
        if p == 0 and b == 0:
            return 0.0
        q = p * batch.prefill_context_tokens / max(batch.prefill_seqs, 1)
        h = max(0, p + b - self.knee_tokens)
        return (self.c0_s + self.c_prefill_s * p + self.c_prefill_sq_s * q
                + self.c_decode_s * b + self.c_ctx_s * batch.decode_context_tokens
                + self.c_knee_s * h)

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int,
                            num_steps: int) -> np.ndarray:
        """Vectorised pure-decode step times; bit-identical to :meth:`step_time_s` per step.

        Step ``j`` has ``decode_context_tokens + j * decode_seqs`` context tokens.
        """
        if num_steps < 0:
            raise ValueError("num_steps must be >= 0")
        if decode_seqs == 0:
            return np.zeros(num_steps)
        h = max(0, decode_seqs - self.knee_tokens)
        # same floats as step_time_s with p = q = 0: (head + c_ctx * ctx) + c_knee * h, computed
        # in place (ctx is an exact integer in float64 below 2**53; x + head == head + x)
        head = (self.c0_s + self.c_prefill_s * 0 + self.c_prefill_sq_s * 0.0
                + self.c_decode_s * decode_seqs)
        t = np.arange(num_steps, dtype=np.float64)
        t *= decode_seqs
        t += decode_context_tokens
        t *= self.c_ctx_s
        t += head
        kh = self.c_knee_s * h
        if kh != 0.0:
            t += kh
        return t

    def batch_step_times_s(self, prefill_tokens: np.ndarray, decode_seqs: np.ndarray,
                           decode_context_tokens: np.ndarray, prefill_seqs: np.ndarray,
                           prefill_context_tokens: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`step_time_s` over arrays of batch fields, bit-identical per element.

        The arguments are integer arrays of equal length (the :class:`BatchShape` fields of each
        step); an empty step (no prefill token, no decode) takes 0 s, as in :meth:`step_time_s`.

        Notes
        -----
        Same float operations in the same order as the scalar formula: ``q`` is an exact
        integer product divided once (correctly rounded, like Python's ``int / int`` below
        2**53), and the six terms are added left to right.
        """
        p = np.asarray(prefill_tokens, dtype=np.int64)
        b = np.asarray(decode_seqs, dtype=np.int64)
        q = (p * np.asarray(prefill_context_tokens, dtype=np.int64)).astype(np.float64)
        q /= np.maximum(np.asarray(prefill_seqs, dtype=np.int64), 1)
        h = np.maximum(p + b - self.knee_tokens, 0)
        t = self.c_prefill_s * p.astype(np.float64)
        t += self.c0_s
        t += self.c_prefill_sq_s * q
        t += self.c_decode_s * b.astype(np.float64)
        t += self.c_ctx_s * np.asarray(decode_context_tokens, dtype=np.int64).astype(np.float64)
        t += self.c_knee_s * h.astype(np.float64)
        t[(p == 0) & (b == 0)] = 0.0
        return t

    def linear_surrogate(self) -> dict[str, float]:
        """Coefficients for solvers (seconds; ``knee_tokens`` as a float)."""
        return {"c0_s": self.c0_s, "c_prefill_s": self.c_prefill_s,
                "c_prefill_sq_s": self.c_prefill_sq_s, "c_decode_s": self.c_decode_s,
                "c_ctx_s": self.c_ctx_s, "c_knee_s": self.c_knee_s,
                "knee_tokens": float(self.knee_tokens)}

    @classmethod
    def fit(cls, profile_rows: Iterable[ProfileRow], name: str = "fitted", *,
            knee_tokens: int | None = None, **engine_kw) -> tuple[LinearEngineModel, FitReport]:
        """Fit by non-negative, relative least squares (``np.linalg.lstsq``).

        Rows are weighted by ``1 / latency`` so the fit minimises squared *relative* error.
        Negative coefficients are removed by an active-set loop (drop the most negative, refit).
        With ``knee_tokens=None`` the knee is chosen from :data:`KNEE_CANDIDATES` by the
        smallest weighted residual.

        Returns
        -------
        (LinearEngineModel, FitReport)
        """
        rows = list(profile_rows)
        if len(rows) < 3:
            raise ValueError(f"{name}: need at least 3 profile rows to fit, got {len(rows)}")
        shapes = [r.shape for r in rows]
        y = np.array([r.latency_s for r in rows])
        knees = KNEE_CANDIDATES if knee_tokens is None else (knee_tokens,)
        best: tuple[float, np.ndarray, int] | None = None
        for knee in knees:
            x = features(shapes, knee)
            if knee == 0:
                x[:, 5] = 0.0
            coef = _nnls_relative(x, y)
            res = float(np.sum(((x @ coef) / y - 1.0) ** 2))
            if best is None or res < best[0] - 1e-12:
                best = (res, coef, knee)
        assert best is not None
        _, coef, knee = best
        if coef[0] <= 0:
            coef[0] = float(np.min(y)) * 1e-3
        model = cls(name=name, c0_s=float(coef[0]), c_prefill_s=float(coef[1]),
                    c_prefill_sq_s=float(coef[2]), c_decode_s=float(coef[3]),
                    c_ctx_s=float(coef[4]), c_knee_s=float(coef[5]),
                    knee_tokens=knee if coef[5] > 0 else 0, **engine_kw)
        pred = np.array([model.step_time_s(s) for s in shapes])
        return model, FitReport.build(rows, pred)


def features(shapes: Sequence[BatchShape], knee_tokens: int = 0) -> np.ndarray:
    """Design matrix ``[1, P, Q, B, C, max(0, P+B-knee)]`` of the batch shapes."""
    out = np.empty((len(shapes), 6))
    for i, s in enumerate(shapes):
        p, b = s.prefill_tokens, s.decode_seqs
        out[i] = (1.0, p, p * s.prefill_context_tokens / max(s.prefill_seqs, 1), b,
                  s.decode_context_tokens, max(0, p + b - knee_tokens))
    return out


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares of ``x @ c ~ y`` in relative error (columns scaled)."""
    w = 1.0 / y
    a = x * w[:, None]
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    active = [j for j in range(x.shape[1]) if np.any(x[:, j] != 0)]
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], np.ones_like(y), rcond=None)
        if np.all(sol >= 0):
            coef[:] = 0.0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef / scale


def ape_summary(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Median, p90 and max absolute percentage error (in %), and the row count."""
    ape = 100.0 * np.abs(np.asarray(predicted) / np.asarray(measured) - 1.0)
    if ape.size == 0:
        return {"n": 0, "median_ape": float("nan"), "p90_ape": float("nan"),
                "max_ape": float("nan")}
    return {"n": int(ape.size), "median_ape": float(np.median(ape)),
            "p90_ape": float(np.percentile(ape, 90)), "max_ape": float(ape.max())}


@dataclass(frozen=True)
class FitReport:
    """In-sample fit errors overall and per phase (percent)."""

    overall: dict[str, float]
    per_phase: dict[str, dict[str, float]]

    @classmethod
    def build(cls, rows: Sequence[ProfileRow], predicted: np.ndarray) -> FitReport:
        """Summarise errors of ``predicted`` against the rows' latencies."""
        y = np.array([r.latency_s for r in rows])
        phases = np.array([r.phase for r in rows])
        per = {ph: ape_summary(y[phases == ph], predicted[phases == ph])
               for ph in sorted(set(phases.tolist()))}
        return cls(overall=ape_summary(y, predicted), per_phase=per)
