"""Tests for slo_opt.workloads.generators: generators are deterministic, hit their targets, validate input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.request import SLO, Workload
from slo_opt.workloads.generators import (
    INTERACTIVE,
    EmpiricalLengths,
    FixedLengths,
    LognormalLengths,
    SLOClass,
    arrival_rate_per_s,
    assign_slo_classes,
    clip_lengths,
    gamma_arrivals,
    poisson_arrivals,
    rescale_rate,
    retime,
    slice_classes,
    synthetic,
    time_scale,
    window,
    with_slo,
)

RT, NRT = slice_classes()


def rng(seed=0):
    return np.random.default_rng(seed)


# -- determinism --------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 50))
@settings(max_examples=30, deadline=None)
def test_synthetic_same_seed_same_workload(seed, n):
    kw = dict(arrival="gamma", cv=2.0, classes=(RT, NRT))
    a = synthetic(n, 3.0, EmpiricalLengths.default(), rng(seed), **kw)
    b = synthetic(n, 3.0, EmpiricalLengths.default(), rng(seed), **kw)
    assert a == b
    assert len(a) == n


def test_different_seeds_differ():
    a = poisson_arrivals(1.0, 100, rng(1))
    b = poisson_arrivals(1.0, 100, rng(2))
    assert not np.array_equal(a, b)


def test_lengths_deterministic():
    ln = LognormalLengths.from_percentiles((500, 2000), (100, 400))
    for dist in (ln, EmpiricalLengths.default()):
        p1, o1 = dist.sample(200, rng(7))
        p2, o2 = dist.sample(200, rng(7))
        assert np.array_equal(p1, p2) and np.array_equal(o1, o2)
        assert p1.dtype == np.int64 and o1.dtype == np.int64


# -- arrivals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.5, 5.0, 200.0])
def test_poisson_rate_close_to_target(rate):
    t = poisson_arrivals(rate, 100_000, rng(3))
    assert np.all(np.diff(t) >= 0) and t[0] > 0
    assert len(t) / t[-1] == pytest.approx(rate, rel=0.02)
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)


def test_poisson_start_offset():
    t = poisson_arrivals(2.0, 10, rng(0), start_s=100.0)
    assert t[0] > 100.0
    assert np.allclose(t - 100.0, poisson_arrivals(2.0, 10, rng(0)))


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_rate_and_cv_close_to_target(cv):
    t = gamma_arrivals(4.0, cv, 200_000, rng(5))
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert np.all(gaps >= 0)
    assert len(t) / t[-1] == pytest.approx(4.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


@pytest.mark.parametrize(
    "call",
    [
        lambda: poisson_arrivals(0.0, 5, rng()),
        lambda: poisson_arrivals(-1.0, 5, rng()),
        lambda: poisson_arrivals(math.inf, 5, rng()),
        lambda: poisson_arrivals(1.0, -1, rng()),
        lambda: poisson_arrivals(1.0, 2.5, rng()),
        lambda: gamma_arrivals(1.0, 0.0, 5, rng()),
        lambda: gamma_arrivals(1.0, -2.0, 5, rng()),
        lambda: gamma_arrivals(0.0, 1.0, 5, rng()),
        lambda: synthetic(5, 1.0, FixedLengths(1, 1), rng(), arrival="uniform"),
        lambda: synthetic(-1, 1.0, FixedLengths(1, 1), rng()),
        lambda: synthetic(5, 1.0, FixedLengths(1, 1), rng(), arrival="gamma", cv=0),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_rng_must_be_generator():
    with pytest.raises(TypeError, match="Generator"):
        poisson_arrivals(1.0, 5, 42)  # type: ignore[arg-type]


def test_zero_requests():
    assert poisson_arrivals(1.0, 0, rng()).size == 0
    assert len(synthetic(0, 1.0, FixedLengths(3, 4), rng())) == 0


# -- lengths ------------------------------------------------------------------------------------


def test_fixed_lengths():
    p, o = FixedLengths(17, 5).sample(4, rng())
    assert p.tolist() == [17] * 4 and o.tolist() == [5] * 4
    with pytest.raises(ValueError):
        FixedLengths(0, 5)


def test_lognormal_percentiles_close():
    # vicuna-13b outputs (SSJF): p50 140, p90 397, filtered to < 512 tokens
    dist = LognormalLengths.from_percentiles((1020, 2734), (140, 397), max_output_tokens=511)
    p, o = dist.sample(200_000, rng(11))
    assert np.percentile(p, 50) == pytest.approx(1020, rel=0.02)
    assert np.percentile(p, 90) == pytest.approx(2734, rel=0.02)
    assert np.percentile(o, 50) == pytest.approx(140, rel=0.02)
    assert np.percentile(o, 90) == pytest.approx(397, rel=0.02)
    assert o.min() >= 1 and o.max() == 511 and p.max() <= 8192


def test_lognormal_clipped_to_bounds():
    dist = LognormalLengths.from_percentiles((2, 5000), (1, 1), max_prompt_tokens=64)
    p, o = dist.sample(10_000, rng(0))
    assert p.min() >= 1 and p.max() == 64
    assert np.all(o == 1)


@pytest.mark.parametrize("bad", [(0.5, 2), (100, 50), (math.nan, 3)])
def test_lognormal_bad_percentiles(bad):
    with pytest.raises(ValueError):
        LognormalLengths.from_percentiles(bad, (10, 20))


def test_empirical_resamples_rows_jointly():
    dist = EmpiricalLengths([1, 2, 3], [10, 20, 30])
    p, o = dist.sample(1000, rng(2))
    assert np.array_equal(o, 10 * p)
    assert set(p.tolist()) == {1, 2, 3}


def test_empirical_default_matches_sharegpt_stats():
    dist = EmpiricalLengths.default()
    assert len(dist) == 2000
    # full ShareGPT-8k table: mean in 2340, mean out 439 (shared/traces/README.md)
    assert dist.prompt_tokens.mean() == pytest.approx(2340, rel=0.05)
    assert dist.output_tokens.mean() == pytest.approx(439, rel=0.05)


@pytest.mark.parametrize("p,o", [([], []), ([1, 2], [1]), ([0, 2], [1, 1]), ([1.5], [1])])
def test_empirical_rejects_bad_tables(p, o):
    with pytest.raises(ValueError):
        EmpiricalLengths(p, o)


# -- SLO classes --------------------------------------------------------------------------------


def test_class_shares_close():
    cols = assign_slo_classes(100_000, (RT, NRT), rng(4))
    share_rt = np.mean(cols["class_label"] == "rt")
    assert share_rt == pytest.approx(0.25, abs=0.01)
    is_rt = cols["class_label"] == "rt"
    assert np.all(cols["ttft_slo_s"][is_rt] == 0.5) and np.all(cols["tpot_slo_s"][is_rt] == 0.05)
    assert np.all(cols["utility"][is_rt] == 100.0) and np.all(cols["utility"][~is_rt] == 1.0)
    assert np.all(cols["ttft_slo_s"][~is_rt] == 2.0) and np.all(np.isinf(cols["e2e_slo_s"]))


@given(n=st.integers(0, 500), share=st.floats(0.0, 1.0))
@settings(max_examples=30, deadline=None)
def test_exact_class_counts(n, share):
    a = SLOClass("a", SLO(1.0, 0.1), share=share)
    b = SLOClass("b", SLO(2.0, 0.2), share=1.0 - share)
    cols = assign_slo_classes(n, (a, b), rng(0), exact=True)
    k = int(np.sum(cols["class_label"] == "a"))
    assert abs(k - share * n) <= 1


@pytest.mark.parametrize(
    "classes",
    [
        (),
        (SLOClass("a", SLO(1.0), share=0.5),),
        (SLOClass("a", SLO(1.0), share=0.5), SLOClass("b", SLO(1.0), share=0.6)),
        (SLOClass("a", SLO(1.0), share=0.5), SLOClass("a", SLO(1.0), share=0.5)),
    ],
)
def test_bad_class_mix(classes):
    with pytest.raises(ValueError):
        assign_slo_classes(10, classes, rng())


def test_slo_class_validation():
    with pytest.raises(ValueError):
        SLOClass("x", SLO(1.0), share=1.5)
    with pytest.raises(ValueError):
        SLOClass("x", SLO(1.0), utility=-1.0)


# -- transformations ----------------------------------------------------------------------------

BASE = synthetic(2000, 5.0, EmpiricalLengths.default(), rng(9), arrival="gamma", cv=3.0)


@given(target=st.floats(0.01, 1000.0))
@settings(max_examples=40, deadline=None)
def test_rescale_rate_hits_target_and_keeps_order(target):
    w = rescale_rate(BASE, target)
    assert arrival_rate_per_s(w) == pytest.approx(target, rel=1e-9)
    assert np.all(np.diff(w.arrival_s) >= 0)
    assert np.array_equal(np.argsort(w.arrival_s, kind="stable"),
                          np.argsort(BASE.arrival_s, kind="stable"))
    assert np.array_equal(w.prompt_tokens, BASE.prompt_tokens)
    assert np.array_equal(w.output_tokens, BASE.output_tokens)


def test_time_scale():
    w = time_scale(BASE, 2.0)
    assert np.allclose(w.arrival_s, 2.0 * BASE.arrival_s)
    assert arrival_rate_per_s(w) == pytest.approx(arrival_rate_per_s(BASE) / 2)
    with pytest.raises(ValueError):
        time_scale(BASE, 0.0)
    with pytest.raises(ValueError):
        rescale_rate(BASE, -1.0)
    with pytest.raises(ValueError):
        rescale_rate(BASE.head(1), 1.0)


def test_retime_keeps_lengths():
    w = retime(BASE, 50.0, rng(1))
    assert np.array_equal(w.prompt_tokens, BASE.prompt_tokens)
    assert arrival_rate_per_s(w) == pytest.approx(50.0, rel=0.1)


def test_with_slo_single_and_mix():
    w = with_slo(BASE, SLO(ttft_s=1.0, tpot_s=0.1))
    assert np.all(w.ttft_slo_s == 1.0) and np.all(w.tpot_slo_s == 0.1)
    w = with_slo(BASE, INTERACTIVE)
    assert np.all(w.class_label == "interactive") and np.all(w.ttft_slo_s == 2.0)
    w = with_slo(BASE, slice_classes(rt_share=0.5), rng(0), exact=True)
    assert np.sum(w.class_label == "rt") == 1000
    assert np.array_equal(w.arrival_s, BASE.arrival_s)
    with pytest.raises(ValueError, match="rng"):
        with_slo(BASE, slice_classes())


def test_synthetic_with_classes_and_single_slo():
    w = synthetic(100, 2.0, FixedLengths(8, 4), rng(0), classes=SLO(1.0, 0.1))
    assert np.all(w.ttft_slo_s == 1.0)
    w = synthetic(4000, 2.0, FixedLengths(8, 4), rng(0), classes=slice_classes())
    assert set(w.class_label.tolist()) == {"rt", "nrt"}


def test_clip_lengths():
    w = clip_lengths(BASE, max_prompt_tokens=100, max_output_tokens=50)
    assert w.prompt_tokens.max() == 100 and w.output_tokens.max() == 50
    assert np.array_equal(w.prompt_tokens, np.minimum(BASE.prompt_tokens, 100))
    assert clip_lengths(BASE) == BASE
    with pytest.raises(ValueError):
        clip_lengths(BASE, max_prompt_tokens=0)


def test_window():
    w = Workload.from_arrays([0.0, 1.0, 2.0, 2.0, 3.5, 5.0], [1] * 6, [1, 2, 3, 4, 5, 6])
    sub = window(w, 2.0, 2.0)
    assert sub.arrival_s.tolist() == [0.0, 0.0, 1.5]
    assert sub.output_tokens.tolist() == [3, 4, 5]
    assert len(window(w, 10.0, 1.0)) == 0
    with pytest.raises(ValueError):
        window(w, 0.0, 0.0)
    with pytest.raises(ValueError):
        window(w, -1.0, 1.0)
