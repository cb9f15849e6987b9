"""Finite differences against closed-form and torch gradients; gradcheck's verdicts and messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from layer0_math.calculus import (
    GradcheckError,
    gradcheck,
    numerical_gradient,
    numerical_jacobian,
)


def _mlp_loss(W, x):
    return float(np.sum(np.tanh(W @ x) ** 2))


def _mlp_grads(W, x):
    t = np.tanh(W @ x)
    upstream = 2 * t * (1 - t**2)  # d loss / d (W x)
    return np.outer(upstream, x), W.T @ upstream


@settings(max_examples=20)
@given(arrays(np.float64, st.integers(1, 10), elements=st.floats(-3, 3)))
def test_numerical_gradient_of_closed_forms(x):
    f = lambda v: np.sum(np.sin(v) * v**2)
    exact = np.cos(x) * x**2 + 2 * x * np.sin(x)
    np.testing.assert_allclose(numerical_gradient(f, x), exact, atol=1e-8)


def test_numerical_gradient_matches_torch_autograd_on_a_matrix():
    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((4, 3)), rng.standard_normal(3)
    Wt = torch.tensor(W, requires_grad=True)
    torch.sum(torch.tanh(Wt @ torch.tensor(x)) ** 2).backward()
    num = numerical_gradient(lambda M: _mlp_loss(M, x), W)
    assert num.shape == W.shape
    np.testing.assert_allclose(num, Wt.grad.numpy(), atol=1e-9)


def test_central_difference_error_is_second_order():
    # truncation error h^2 f'''/6: shrinking h by 10 shrinks the error by ~100
    f = lambda v: float(np.exp(v[0]))
    x = np.array([0.3])
    errs = [abs(numerical_gradient(f, x, eps=h)[0] - np.exp(0.3)) for h in (1e-2, 1e-3)]
    assert errs[0] / errs[1] == pytest.approx(100, rel=0.05)
    assert errs[0] == pytest.approx(np.exp(0.3) * 1e-4 / 6, rel=0.05)


def test_numerical_jacobian_matches_torch():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 3))
    x = rng.standard_normal(3)
    f = lambda v: np.tanh(A @ v)  # R^3 -> R^5
    J_ref = torch.autograd.functional.jacobian(
        lambda v: torch.tanh(torch.tensor(A) @ v), torch.tensor(x)
    ).numpy()
    J = numerical_jacobian(f, x)
    assert J.shape == (5, 3)
    np.testing.assert_allclose(J, J_ref, atol=1e-9)


def test_gradcheck_passes_correct_gradients_and_leaves_inputs_untouched():
    rng = np.random.default_rng(2)
    W, x = rng.standard_normal((4, 3)), rng.standard_normal(3)
    W0, x0 = W.copy(), x.copy()
    result = gradcheck(_mlp_loss, [W, x], list(_mlp_grads(W, x)))
    assert result.passed and result.n_failed == 0
    assert result.max_abs_error < 1e-8
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(x, x0)


def test_gradcheck_single_array_form():
    x = np.linspace(-1, 1, 7)
    assert gradcheck(lambda v: np.sum(v**3), x, 3 * x**2).passed


def test_gradcheck_names_the_worst_element_and_both_values():
    rng = np.random.default_rng(3)
    W, x = rng.standard_normal((4, 3)), rng.standard_normal(3)
    gW, gx = _mlp_grads(W, x)
    bad = gW.copy()
    bad[2, 1] += 0.5  # one wrong element
    with pytest.raises(GradcheckError) as info:
        gradcheck(_mlp_loss, [W, x], [bad, gx])
    msg = str(info.value)
    assert "1 of 15" in msg
    assert "input 0 at index (2, 1)" in msg
    assert f"analytic {bad[2, 1]:.10g}" in msg
    assert f"numerical {gW[2, 1]:.6g}"[:16] in msg
    result = gradcheck(_mlp_loss, [W, x], [bad, gx], raise_on_failure=False)
    assert not result.passed
    assert (result.worst_input, result.worst_index) == (0, (2, 1))
    assert result.numerical == pytest.approx(gW[2, 1], abs=1e-8)


def test_gradcheck_catches_a_nan_gradient():
    x = np.ones(3)
    with pytest.raises(GradcheckError, match="index \\(1,\\)"):
        gradcheck(lambda v: np.sum(v**2), x, np.array([2.0, np.nan, 2.0]))


def test_gradcheck_bad_calls_are_clear_errors():
    x = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        gradcheck(lambda v: np.sum(v), x, np.ones(4))
    with pytest.raises(ValueError, match="scalar"):
        gradcheck(lambda v: v * 2, x, np.ones(3))
    with pytest.raises(ValueError, match="2 inputs but 1"):
        gradcheck(lambda a, b: np.sum(a * b), [x, x], [x])
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(np.sum, x, eps=0.0)
