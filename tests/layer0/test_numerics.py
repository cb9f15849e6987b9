"""Floating point: epsilons and ranges against np.finfo, stable formulas against references."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layer0_math.numerics import (
    kahan_sum,
    largest_finite,
    log_softmax,
    logsumexp,
    machine_epsilon,
    quadratic_roots,
    softmax,
    to_bfloat16,
)


@pytest.mark.parametrize("fmt", ["float16", "float32", "float64"])
def test_machine_epsilon_matches_finfo(fmt):
    assert machine_epsilon(fmt) == float(np.finfo(fmt).eps)
    assert machine_epsilon(np.dtype(fmt)) == float(np.finfo(fmt).eps)


def test_bfloat16_epsilon_and_range_match_its_format():
    # bfloat16: 7 fraction bits, float32's 8-bit exponent (torch has the real dtype)
    assert machine_epsilon("bfloat16") == 2.0**-7 == torch.finfo(torch.bfloat16).eps
    assert largest_finite("bfloat16") == (2 - 2**-7) * 2.0**127 == torch.finfo(torch.bfloat16).max


@pytest.mark.parametrize("fmt", ["float16", "float32", "float64"])
def test_largest_finite_matches_finfo(fmt):
    assert largest_finite(fmt) == float(np.finfo(fmt).max)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="int32"):
        machine_epsilon("int32")
    with pytest.raises(ValueError, match="float8"):
        machine_epsilon("float8")


@given(arrays(np.float32, 50, elements=st.floats(-(2.0**100), 2.0**100, width=32)))
def test_to_bfloat16_rounds_toward_zero_onto_bfloat16_values(x):
    ours = to_bfloat16(x)
    # torch rounds to nearest; truncation lands on the neighbour at or toward zero from x
    assert np.all(np.abs(ours) <= np.abs(x))
    # relative error below eps (normal numbers); one bf16 subnormal step 2^-133 below 2^-126
    assert np.all(np.abs(x - ours) <= np.abs(x) * 2.0**-7 + 2.0**-133)
    # and the result is a bfloat16 value: converting it through torch is exact
    back = torch.from_numpy(ours).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(back, ours)


def test_fp16_overflow_and_what_stable_softmax_does_about_it():
    assert largest_finite("float16") == 65504.0
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isinf(np.float16(65504) * np.float16(2))
        assert np.isinf(np.exp(np.float16(12.0)))  # e^12 = 162755 > 65504
        logits = np.array([12.0, 10.0, -3.0], dtype=np.float16)
        naive = np.exp(logits) / np.exp(logits).sum()
    assert np.isnan(naive).any()
    stable = softmax(logits)
    assert stable.dtype == np.float16
    ref = scipy.special.softmax(logits.astype(np.float64))
    np.testing.assert_allclose(stable.astype(np.float64), ref, atol=2e-3)


def _exact_roots(a, b, c):
    getcontext().prec = 100
    a, b, c = Decimal(a), Decimal(b), Decimal(c)
    s = (b * b - 4 * a * c).sqrt()
    r = sorted([(-b - s) / (2 * a), (-b + s) / (2 * a)], key=abs, reverse=True)
    return [float(v) for v in r]


def test_catastrophic_cancellation_in_the_quadratic_formula():
    a, b, c = 1.0, 1e8, 1.0
    exact_small = _exact_roots(a, b, c)[1]
    naive_small = quadratic_roots(a, b, c, stable=False)[1]
    stable_small = quadratic_roots(a, b, c, stable=True)[1]
    assert abs(naive_small - exact_small) / abs(exact_small) > 0.1  # most digits lost
    assert abs(stable_small - exact_small) / abs(exact_small) < 1e-15


@given(
    st.floats(0.01, 100),
    st.floats(-1e6, 1e6),
    st.floats(-100, 100),
)
def test_stable_quadratic_roots_are_accurate(a, b, c):
    if b * b - 4 * a * c <= 0 or abs(c) < 1e-6:
        return
    exact = _exact_roots(a, b, c)
    got = quadratic_roots(a, b, c)
    # a well-conditioned root problem (distinct roots) is solved to a few ulps
    for g, e in zip(sorted(got), sorted(exact), strict=True):
        assert abs(g - e) <= 1e-13 * abs(e) + 1e-300


def test_quadratic_roots_bad_input():
    with pytest.raises(ValueError, match="a=0"):
        quadratic_roots(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="complex"):
        quadratic_roots(1.0, 0.0, 1.0)


@given(arrays(np.float64, (3, 7), elements=st.floats(-800, 800)))
def test_logsumexp_softmax_log_softmax_match_scipy(x):
    # absolute accuracy eps * max|x| (scipy adds a log1p refinement near 0 that we do not)
    tol = dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(logsumexp(x, axis=1), scipy.special.logsumexp(x, axis=1), **tol)
    np.testing.assert_allclose(logsumexp(x, axis=0), scipy.special.logsumexp(x, axis=0), **tol)
    np.testing.assert_allclose(softmax(x, axis=1), scipy.special.softmax(x, axis=1), atol=1e-15)
    np.testing.assert_allclose(
        log_softmax(x, axis=1), scipy.special.log_softmax(x, axis=1), rtol=1e-12, atol=1e-12
    )
    t = torch.from_numpy(x)
    np.testing.assert_allclose(log_softmax(x), torch.log_softmax(t, dim=-1).numpy(), atol=1e-12)


def test_logsumexp_where_the_naive_formula_overflows_or_underflows():
    x = np.array([1000.0, 1000.0])
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(np.sum(np.exp(x))))
    assert logsumexp(x) == pytest.approx(1000 + math.log(2), rel=1e-15)
    y = np.array([-1000.0, -1001.0])
    with np.errstate(divide="ignore"):
        assert np.isneginf(np.log(np.sum(np.exp(y))))
    assert logsumexp(y) == pytest.approx(-1000 + math.log1p(math.exp(-1)), rel=1e-15)
    assert logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    assert logsumexp(np.array([5.0, 6.0]), keepdims=True).shape == (1,)


def test_kahan_sum_beats_sequential_float32_summation():
    x = np.full(100_000, 0.1, dtype=np.float32)
    exact = math.fsum(x.astype(np.float64))  # the float32 values summed exactly
    sequential = float(np.add.accumulate(x)[-1])  # left to right, rounding at every step
    kahan = float(kahan_sum(x))
    assert kahan_sum(x).dtype == np.float32
    assert abs(sequential - exact) / exact > 1e-4
    assert abs(kahan - exact) / exact < 2 * 2.0**-24  # within one float32 rounding


@settings(max_examples=20)
@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(-1e4, 1e4, width=32)))
def test_kahan_error_bound(x):
    exact = math.fsum(x.astype(np.float64))
    bound = 2 * 2.0**-24 * float(np.sum(np.abs(x.astype(np.float64)))) + 1e-30
    assert abs(float(kahan_sum(x)) - exact) <= bound


def test_kahan_rejects_integers():
    with pytest.raises(TypeError, match="int64"):
        kahan_sum(np.arange(3))
