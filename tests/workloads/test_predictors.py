"""Length predictors: determinism, calibration against their definition, training, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.request import Workload
from slo_opt.workloads.predictors import (
    SSJF_VICUNA13B_CONFUSION,
    SSJF_VICUNA13B_EDGES,
    ConfusionMatrixPredictor,
    NoisyRegression,
    Oracle,
    ProxyPredictor,
    bucket_of,
    evaluate_predictions,
    interpolated_confusion,
    spearman,
    train_proxy,
)


def _wl(out, prompt=10):
    out = np.asarray(out)
    return Workload.from_arrays(np.arange(out.size) * 0.1, prompt, out)


def test_vicuna_matrix_is_row_stochastic_and_edges_match_source():
    m = np.asarray(SSJF_VICUNA13B_CONFUSION)
    assert m.shape == (5, 5)
    assert np.allclose(m.sum(axis=1), 1.0, atol=2e-3)
    assert SSJF_VICUNA13B_EDGES == (42, 141, 294, 503)


def test_bucket_edges_are_left_closed():
    assert bucket_of(np.array([1, 41, 42, 140, 141, 503, 600]), SSJF_VICUNA13B_EDGES).tolist() == \
        [0, 0, 1, 1, 2, 4, 4]


@pytest.mark.parametrize("make", [
    lambda: ConfusionMatrixPredictor(seed=3),
    lambda: NoisyRegression(sigma=0.7, seed=3),
    lambda: NoisyRegression(sigma=0.7, seed=np.random.default_rng(3)),
])
def test_predictions_fixed_per_run_and_reset_reseeds(make):
    w = _wl(np.random.default_rng(0).integers(2, 600, 300))
    p = make()
    a = p.predict_tokens(w).copy()
    assert np.array_equal(a, p.predict_tokens(w))  # fixed within a run
    p.reset()
    assert np.array_equal(a, p.predict_tokens(w))  # reset restores the seed state
    assert np.array_equal(a, make().predict_tokens(w))  # a fresh copy agrees
    w2 = _wl(w.output_tokens[:100])
    p.reset()
    assert np.array_equal(a[:100], p.predict_tokens(w2))  # prefix consistency


def test_different_seeds_differ():
    w = _wl(np.random.default_rng(0).integers(2, 600, 300))
    a = ConfusionMatrixPredictor(seed=1).predict_tokens(w)
    b = ConfusionMatrixPredictor(seed=2).predict_tokens(w)
    assert not np.array_equal(a, b)


def test_oracle_and_zero_noise_are_exact():
    w = _wl([5, 50, 500])
    assert Oracle().predict_tokens(w).tolist() == [5, 50, 500]
    assert NoisyRegression(sigma=0.0).predict_tokens(w).tolist() == [5, 50, 500]


def test_confusion_draws_follow_the_matrix_rows():
    n = 40000
    out = np.full(n, 200)  # true class 2
    p = ConfusionMatrixPredictor(seed=7)
    cls = p.predict_class(_wl(out))
    freq = np.bincount(cls, minlength=5) / n
    row = np.asarray(SSJF_VICUNA13B_CONFUSION[2]) / sum(SSJF_VICUNA13B_CONFUSION[2])
    assert np.allclose(freq, row, atol=0.01)


def test_quality_sweep_end_points():
    w = _wl(np.random.default_rng(1).integers(2, 600, 4000))
    perfect = evaluate_predictions(
        ConfusionMatrixPredictor.with_quality(1.0).predict_tokens(w), w.output_tokens)
    assert perfect["accuracy"] == 1.0
    rnd = evaluate_predictions(
        ConfusionMatrixPredictor.with_quality(0.0).predict_tokens(w), w.output_tokens)
    assert abs(rnd["accuracy"] - 0.2) < 0.03
    assert abs(rnd["spearman"]) < 0.06
    assert np.allclose(interpolated_confusion(0.5, 5, np.asarray(SSJF_VICUNA13B_CONFUSION)),
                       SSJF_VICUNA13B_CONFUSION)


@given(st.lists(st.integers(0, 20), min_size=3, max_size=30),
       st.lists(st.integers(0, 20), min_size=3, max_size=30))
def test_spearman_matches_scipy(a, b):
    scipy_stats = pytest.importorskip("scipy.stats")
    n = min(len(a), len(b))
    a, b = np.array(a[:n]), np.array(b[:n])
    ref = scipy_stats.spearmanr(a, b).statistic
    got = spearman(a, b)
    assert (np.isnan(ref) and np.isnan(got)) or abs(ref - got) < 1e-9


def test_proxy_training_recovers_a_known_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = np.maximum(np.rint(np.exp(4 + 1.2 * x[:, 0] - 0.5 * x[:, 2])), 1)
    m = train_proxy(x[:1500], y[:1500])
    ev = evaluate_predictions(m.predict(x[1500:]), y[1500:])
    assert ev["spearman"] > 0.99 and ev["accuracy"] > 0.9
    # weak features -> weak predictor
    m2 = train_proxy(rng.normal(size=(1500, 2)), y[:1500])
    assert evaluate_predictions(m2.predict(x[1500:, :2]), y[1500:])["spearman"] < 0.2


def test_proxy_predictor_on_a_workload():
    rng = np.random.default_rng(0)
    p = rng.integers(10, 1000, 500)
    o = np.maximum(np.rint(p * 0.5), 1)
    w = Workload.from_arrays(np.arange(500) * 0.1, p, o)
    m = train_proxy(np.log(p)[:, None], o)
    pr = ProxyPredictor(model=m)
    assert pr.evaluate(w)["spearman"] > 0.99


@pytest.mark.parametrize("bad", [
    lambda: ConfusionMatrixPredictor(matrix=np.eye(3)),
    lambda: ConfusionMatrixPredictor(matrix=-np.eye(5)),
    lambda: ConfusionMatrixPredictor(edges=(5, 3, 8, 9)),
    lambda: NoisyRegression(sigma=-1),
    lambda: Oracle(latency_s=-0.1),
    lambda: Oracle(seed=-1),
    lambda: ProxyPredictor(),
    lambda: train_proxy(np.zeros((3, 1)), [1, 0, 2]),
    lambda: interpolated_confusion(1.5),
])
def test_bad_input_raises(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()
