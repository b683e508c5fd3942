"""Output-length predictors for length-aware policies (SSJF, least-slack, FastServe ablations).

A predictor maps each request of a :class:`~slo_opt.request.Workload` to a predicted number of
output tokens. Predictions are drawn once per request per run, from an explicit
``numpy.random.Generator`` built from the ``seed`` given at construction, and then stay fixed:
``predict_tokens(workload)`` returns the same array every time it is called on the same
workload object, and :meth:`Predictor.reset` re-seeds so that a new run reproduces it exactly.
Request ``i``'s draw depends only on the seed, ``i`` and its true length (uniform and normal
draws are taken for the whole workload at once, in id order), so a prefix of a workload gets the
same predictions as the whole workload.

Predictors
----------
* :class:`Oracle` — the true output length (oracle SJF).
* :class:`ConfusionMatrixPredictor` — a synthetic bucket classifier: the predicted class is drawn
  from a row of a row-normalised confusion matrix given the true class; the default is SSJF's
  vicuna-13b 5-class matrix (:data:`SSJF_VICUNA13B_CONFUSION`) with bucket edges
  :data:`SSJF_VICUNA13B_EDGES`.
* :class:`NoisyRegression` — ``true * exp(sigma * z)``, ``z ~ N(0, 1)`` (lognormal error).
* :class:`ProxyPredictor` — a trainable proxy: ridge regression of ``log(output)`` on
  user-supplied prompt features (:func:`train_proxy`, :func:`evaluate_predictions`).

Every predictor has ``latency_s``: the time the prediction takes. Policies treat a request as
not yet admissible until ``arrival_s + latency_s`` (SSJF section 3.4 measured 7.9 ms per query
on a V100 for BERT-base).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_opt.request import Workload

__all__ = [
    "SSJF_VICUNA13B_CLASS_MEAN_TOKENS",
    "SSJF_VICUNA13B_CONFUSION",
    "SSJF_VICUNA13B_EDGES",
    "ConfusionMatrixPredictor",
    "NoisyRegression",
    "Oracle",
    "Predictor",
    "ProxyModel",
    "ProxyPredictor",
    "bucket_of",
    "evaluate_predictions",
    "interpolated_confusion",
    "prompt_features",
    "spearman",
    "train_proxy",
]

#: SSJF's vicuna-13b bucket edges (p25, p50, p75, p99 of output tokens, LMSYS-Chat-1M, < 512
#: tokens). Source: ``preprocess_dataset.py`` of James-QiuHaoran/LLM-serving-with-proxy-models
#: @4b866866; recomputed from the released data in research/papers.md section 3.4 [C, D].
SSJF_VICUNA13B_EDGES: tuple[int, ...] = (42, 141, 294, 503)

#: Row-normalised 5-class confusion matrix (rows: true class, columns: predicted class) of the
#: SSJF BERT-base proxy on vicuna-13b, computed from the authors' released test predictions
#: ``prediction/final/predictions_warmup_multi_cls_1000K.csv`` (85,482 prompts; accuracy 60.0%).
#: Source: research/papers.md section 3.4 [D]. Rows are renormalised to sum to 1 exactly.
SSJF_VICUNA13B_CONFUSION: tuple[tuple[float, ...], ...] = (
    (0.798, 0.152, 0.030, 0.016, 0.004),
    (0.155, 0.566, 0.194, 0.076, 0.010),
    (0.030, 0.216, 0.456, 0.276, 0.021),
    (0.013, 0.070, 0.256, 0.590, 0.071),
    (0.017, 0.053, 0.158, 0.530, 0.243),
)

#: Mean true output length per true class (tokens), vicuna-13b; used as the numeric estimate of
#: a predicted class (research/papers.md section 3.4 and decision 23).
SSJF_VICUNA13B_CLASS_MEAN_TOKENS: tuple[float, ...] = (18.5, 87.4, 216.9, 380.0, 508.1)


def _seed_state(seed: int | np.random.Generator) -> Any:
    """A restorable description of the randomness source."""
    if isinstance(seed, np.random.Generator):
        return (type(seed.bit_generator), seed.bit_generator.state)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 or a numpy Generator, got {seed!r}")
    return int(seed)


def _make_rng(state: Any) -> np.random.Generator:
    if isinstance(state, int):
        return np.random.default_rng(state)
    cls, st = state
    bg = cls()
    bg.state = st
    return np.random.Generator(bg)


def bucket_of(tokens: np.ndarray, edges: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Class index of each length: class ``k`` is ``edges[k-1] <= tokens < edges[k]``."""
    return np.searchsorted(np.asarray(edges), np.asarray(tokens), side="right")


@dataclass
class Predictor:
    """Base class: a cached, re-seedable per-request prediction.

    Parameters
    ----------
    seed : int or numpy.random.Generator
        Randomness source. A Generator's state is snapshotted at construction, so
        :meth:`reset` restores it; an int is re-seeded with ``np.random.default_rng(seed)``.
    latency_s : float
        Prediction latency; a request becomes admissible at ``arrival_s + latency_s``.
    """

    seed: int | np.random.Generator = 0
    latency_s: float = 0.0
    _state: Any = field(default=None, init=False, repr=False, compare=False)
    _cache: tuple[Workload, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                       compare=False)

    def __post_init__(self) -> None:
        self._state = _seed_state(self.seed)
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise ValueError(f"latency_s must be finite and >= 0, got {self.latency_s!r}")

    def reset(self) -> None:
        """Forget cached predictions; the next run re-draws them from the initial seed state."""
        self._cache = None

    def predict_tokens(self, workload: Workload) -> np.ndarray:
        """Predicted output tokens of every request of ``workload`` (float, > 0)."""
        c = self._cache
        if c is not None and c[0] is workload:
            return c[1]
        pred = np.asarray(self._draw(workload, _make_rng(self._state)), dtype=float)
        pred.setflags(write=False)
        self._cache = (workload, pred)
        return pred

    def ready_s(self, workload: Workload) -> np.ndarray:
        """Time at which each request's prediction is available (``arrival_s + latency_s``)."""
        return workload.arrival_s + self.latency_s

    def _draw(self, workload: Workload, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Oracle(Predictor):
    """The true output length (oracle knowledge; SJF's key)."""

    def _draw(self, workload: Workload, rng: np.random.Generator) -> np.ndarray:
        return workload.output_tokens.astype(float)


def interpolated_confusion(quality: float, num_classes: int = 5,
                           base: np.ndarray | None = None) -> np.ndarray:
    """A confusion matrix between random guessing and a perfect classifier.

    ``quality`` in [0, 1]: 0 is the uniform matrix (random predictor), 1 the identity. With
    ``base`` given, ``quality`` = 0.5 returns ``base`` and the path is piecewise linear
    uniform -> base -> identity (so SSJF's matrix sits in the middle of an accuracy sweep).
    """
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must be in [0, 1], got {quality!r}")
    uni = np.full((num_classes, num_classes), 1.0 / num_classes)
    eye = np.eye(num_classes)
    if base is None:
        return (1 - quality) * uni + quality * eye
    base = np.asarray(base, float)
    if quality <= 0.5:
        a = quality / 0.5
        return (1 - a) * uni + a * base
    a = (quality - 0.5) / 0.5
    return (1 - a) * base + a * eye


@dataclass
class ConfusionMatrixPredictor(Predictor):
    """Synthetic bucket classifier driven by a confusion matrix (SSJF section 3.4; decision 23).

    The true class of a request is ``bucket_of(output_tokens, edges)``; the predicted class is
    drawn from that row of ``matrix`` (inverse CDF of one uniform per request); the predicted
    length is ``class_tokens[predicted class]``.

    Parameters
    ----------
    matrix : array-like, shape (C, C)
        Row-stochastic confusion matrix (rows are renormalised; negative entries rejected).
        Default: SSJF's vicuna-13b matrix (:data:`SSJF_VICUNA13B_CONFUSION`).
    edges : tuple of int, length C - 1
        Bucket edges in tokens (default :data:`SSJF_VICUNA13B_EDGES`).
    class_tokens : tuple of float, length C
        Numeric estimate of each class (default: vicuna-13b class means). Ordering is all SJF
        needs; the value matters for the starvation guard's ``k x predicted time``.

    Notes
    -----
    The SSJF authors plug the *class index* into their exec-time model (``0.1 + 0.02 * class``);
    only the order matters for their SJF, so class means give the same schedule but a more
    meaningful predicted time.
    """

    matrix: Any = SSJF_VICUNA13B_CONFUSION
    edges: tuple[int, ...] = SSJF_VICUNA13B_EDGES
    class_tokens: tuple[float, ...] = SSJF_VICUNA13B_CLASS_MEAN_TOKENS

    def __post_init__(self) -> None:
        super().__post_init__()
        m = np.asarray(self.matrix, float)
        c = len(self.edges) + 1
        if m.shape != (c, c):
            raise ValueError(f"matrix must be {c}x{c} for {len(self.edges)} edges, got {m.shape}")
        if (m < 0).any() or (m.sum(axis=1) <= 0).any() or not np.isfinite(m).all():
            raise ValueError("confusion matrix rows must be finite, >= 0 and not all zero")
        if list(self.edges) != sorted(set(self.edges)) or (len(self.edges) and self.edges[0] < 1):
            raise ValueError(f"edges must be strictly increasing positive ints, got {self.edges}")
        if len(self.class_tokens) != c or min(self.class_tokens) <= 0:
            raise ValueError(f"class_tokens needs {c} positive values, got {self.class_tokens}")
        self._m = m / m.sum(axis=1, keepdims=True)

    @classmethod
    def with_quality(cls, quality: float, *, seed: int | np.random.Generator = 0,
                     latency_s: float = 0.0) -> ConfusionMatrixPredictor:
        """Matrix on the path random (0) -> SSJF vicuna-13b (0.5) -> perfect classes (1)."""
        m = interpolated_confusion(quality, 5, np.asarray(SSJF_VICUNA13B_CONFUSION))
        return cls(seed=seed, latency_s=latency_s, matrix=tuple(map(tuple, m.tolist())))

    @property
    def accuracy_uniform_classes(self) -> float:
        """Expected accuracy when true classes are equally likely (mean diagonal)."""
        return float(np.mean(np.diag(self._m)))

    def predict_class(self, workload: Workload) -> np.ndarray:
        """Predicted class of every request (consistent with :meth:`predict_tokens`)."""
        tok = np.asarray(self.class_tokens)
        return np.searchsorted(tok, self.predict_tokens(workload))

    def _draw(self, workload: Workload, rng: np.random.Generator) -> np.ndarray:
        true = bucket_of(workload.output_tokens, self.edges)
        u = rng.random(len(workload))
        cdf = np.cumsum(self._m, axis=1)
        cdf[:, -1] = 1.0
        pred = (u[:, None] >= cdf[true]).sum(axis=1)
        return np.asarray(self.class_tokens, float)[pred]


@dataclass
class NoisyRegression(Predictor):
    """Lognormal-noise regression: ``true * exp(sigma * z)`` (median-unbiased).

    Parameters
    ----------
    sigma : float
        Standard deviation of the log error (0 = oracle). ``sigma = 1`` roughly matches a
        length regressor with Spearman ~0.6 on LMSYS-like length spreads.
    """

    sigma: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be finite and >= 0, got {self.sigma!r}")

    def _draw(self, workload: Workload, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal(len(workload))
        return np.maximum(workload.output_tokens * np.exp(self.sigma * z), 1.0)


# -- trainable proxy ----------------------------------------------------------------------------


def prompt_features(workload: Workload) -> np.ndarray:
    """Default features: ``[log(prompt_tokens)]`` (all a trace without prompt text offers)."""
    return np.log(workload.prompt_tokens.astype(float))[:, None]


@dataclass(frozen=True)
class ProxyModel:
    """A fitted ridge regression of ``log(output_tokens)`` on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    residual_sigma: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted output tokens (the exponentiated log prediction, >= 1)."""
        x = np.atleast_2d(np.asarray(x, float))
        if x.shape[1] != self.coef.size:
            raise ValueError(f"expected {self.coef.size} features, got {x.shape[1]}")
        z = (x - self.mean) / self.scale
        return np.maximum(np.exp(z @ self.coef + self.intercept), 1.0)


def train_proxy(x: np.ndarray, y_tokens: np.ndarray, *, ridge: float = 1e-3) -> ProxyModel:
    """Fit a ridge regression ``log(y) ~ x`` (closed form, numpy only).

    Parameters
    ----------
    x : array-like, shape (n, d)
        Prompt features supplied by the user (e.g. embeddings, lengths, task ids).
    y_tokens : array-like, shape (n,)
        True output lengths (>= 1).
    ridge : float
        L2 penalty on the standardised coefficients (>= 0).

    Notes
    -----
    A deliberately small stand-in for SSJF's BERT proxy (section 3.4), which cannot be trained
    offline. Use :func:`evaluate_predictions` to get its bucket accuracy and Spearman rank
    correlation on held-out data.
    """
    x = np.atleast_2d(np.asarray(x, float))
    y = np.asarray(y_tokens, float).reshape(-1)
    if x.shape[0] != y.size or y.size < 2:
        raise ValueError(f"need >= 2 rows and matching shapes, got x {x.shape}, y {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (y < 1).any():
        raise ValueError("features must be finite and output lengths >= 1")
    if ridge < 0:
        raise ValueError("ridge must be >= 0")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    ly = np.log(y)
    b0 = float(ly.mean())
    a = z.T @ z + ridge * len(y) * np.eye(z.shape[1])
    coef = np.linalg.solve(a, z.T @ (ly - b0))
    resid = ly - (z @ coef + b0)
    return ProxyModel(mean=mean, scale=scale, coef=coef, intercept=b0,
                      residual_sigma=float(resid.std()))


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    a = np.asarray(a, float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size)
    ranks[order] = np.arange(a.size, dtype=float)
    sa = a[order]
    bounds = np.flatnonzero(np.diff(sa) != 0) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [a.size]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        if e - s > 1:
            ranks[order[s:e]] = (s + e - 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties (NaN if a side is constant)."""
    ra, rb = _rank(a), _rank(b)
    if ra.size != rb.size:
        raise ValueError("spearman: arrays must have equal length")
    sa, sb = ra.std(), rb.std()
    if ra.size < 2 or sa == 0 or sb == 0:
        return float("nan")
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


def evaluate_predictions(pred_tokens: np.ndarray, true_tokens: np.ndarray,
                         edges: tuple[int, ...] = SSJF_VICUNA13B_EDGES) -> dict[str, float]:
    """Bucket accuracy, Spearman correlation and errors of length predictions.

    Returns
    -------
    dict
        ``accuracy`` (same bucket under ``edges``), ``binary_accuracy`` (same side of the
        median edge), ``spearman``, ``mae_tokens``, ``n``.
    """
    p = np.asarray(pred_tokens, float).reshape(-1)
    t = np.asarray(true_tokens, float).reshape(-1)
    if p.size != t.size or p.size == 0:
        raise ValueError("pred and true must be non-empty and of equal length")
    bp, bt = bucket_of(p, edges), bucket_of(t, edges)
    mid = edges[len(edges) // 2 - 1] if len(edges) > 1 else edges[0]
    return {
        "accuracy": float(np.mean(bp == bt)),
        "binary_accuracy": float(np.mean((p >= mid) == (t >= mid))),
        "spearman": spearman(p, t),
        "mae_tokens": float(np.mean(np.abs(p - t))),
        "n": int(p.size),
    }


@dataclass
class ProxyPredictor(Predictor):
    """A trained :class:`ProxyModel` applied to features computed from the workload.

    Parameters
    ----------
    model : ProxyModel
        From :func:`train_proxy`.
    features : callable
        ``features(workload) -> (n, d) array``; default :func:`prompt_features`.
    sample_noise : bool
        If True, add the model's residual lognormal noise (a calibrated stochastic
        predictor); else the deterministic point prediction (``seed`` unused).
    """

    model: ProxyModel | None = None
    features: Callable[[Workload], np.ndarray] = prompt_features
    sample_noise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model is None:
            raise ValueError("ProxyPredictor needs a model (see train_proxy)")

    def evaluate(self, workload: Workload,
                 edges: tuple[int, ...] = SSJF_VICUNA13B_EDGES) -> dict[str, float]:
        """:func:`evaluate_predictions` of this predictor on ``workload``'s true lengths."""
        return evaluate_predictions(self.predict_tokens(workload), workload.output_tokens, edges)

    def _draw(self, workload: Workload, rng: np.random.Generator) -> np.ndarray:
        assert self.model is not None
        p = self.model.predict(self.features(workload))
        if self.sample_noise:
            p = np.maximum(p * np.exp(self.model.residual_sigma * rng.standard_normal(p.size)), 1.0)
        return p
