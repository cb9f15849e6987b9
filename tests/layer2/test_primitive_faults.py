"""Faults found by testing layer 2 from outside (issue 10, §6), and checks on the inputs where a
numerically naive kernel breaks: huge attention scores and a large offset under normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import Tensor
from layer2_primitives import BatchNorm1d, conv2d, group_norm, layer_norm
from layer2_primitives.attention import scaled_dot_product_attention
from layer2_primitives.normalization import batch_norm
from tests.layer2.torch_compare import assert_close


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4)])  # an even kernel pads more on the far side
def test_conv2d_string_padding_matches_torch(rng, padding, kernel):
    x, w, b = rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(4, 3, *kernel)), rng.normal(size=4)
    ours = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    ref = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = conv2d(*ours, padding=padding)
    tout = torch.nn.functional.conv2d(*ref, padding=padding)
    assert_close(out, tout, f"conv2d padding={padding!r}")
    g = rng.normal(size=out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for name, t, r in zip("xwb", ours, ref, strict=True):
        assert_close(t.grad, r.grad, f"grad {name}")


def test_conv2d_refuses_same_padding_with_stride_and_unknown_strings(rng):
    x, w = Tensor(rng.normal(size=(1, 1, 5, 5))), Tensor(rng.normal(size=(1, 1, 3, 3)))
    with pytest.raises(ValueError, match="same.*stride"):
        conv2d(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="'full'"):
        conv2d(x, w, padding="full")


def test_batchnorm_momentum_none_is_a_cumulative_average_like_torch(rng):
    ours = BatchNorm1d(3, momentum=None, dtype=np.float64)
    ref = torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    for step in range(4):
        x = rng.normal(loc=step, scale=1 + step, size=(8, 3))
        ours(Tensor(x))
        ref(torch.tensor(x))
        assert_close(ours.running_mean, ref.running_mean, f"running_mean after batch {step}")
        assert_close(ours.running_var, ref.running_var, f"running_var after batch {step}")


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_attention_is_exact_for_huge_scores(rng, scale):
    # Scores of order 1e3-1e4 overflow exp() unless each row is shifted by its maximum first.
    q, k, v = (
        rng.normal(size=(2, 5, 4)) * scale,
        rng.normal(size=(2, 6, 4)),
        rng.normal(size=(2, 6, 3)),
    )
    ours = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    ref = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = scaled_dot_product_attention(*ours)
    tout = torch.nn.functional.scaled_dot_product_attention(*ref)
    assert np.all(np.isfinite(out.data)), "attention output is not finite for large scores"
    assert_close(out, tout, "attention output", tol=1e-7)
    g = rng.normal(size=out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    for name, t, r in zip("qkv", ours, ref, strict=True):
        assert_close(t.grad, r.grad, f"grad {name}", tol=1e-6)


def _offset_input(rng, shape):
    """x = 1e4 + N(0, 1) in float32: E[x²] − E[x]² cancels ~8 digits, more than float32 has."""
    return (1e4 + rng.normal(size=shape)).astype(np.float32)


def _reference(x64: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    mean = x64.mean(axis=axes, keepdims=True)
    return (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + 1e-5)


@pytest.mark.parametrize("kind", ["batch", "layer", "group"])
def test_normalisation_survives_a_large_offset(rng, kind):
    x = _offset_input(rng, (16, 4, 8))
    t = Tensor(x)
    if kind == "batch":
        mean, var = np.zeros(4, np.float32), np.ones(4, np.float32)
        out, axes = batch_norm(t, mean, var, training=True), (0, 2)
    elif kind == "layer":
        out, axes = layer_norm(t, (4, 8)), (1, 2)
    else:
        out = group_norm(t, 2, weight=None, bias=None)
        grouped = _reference(x.astype(np.float64).reshape(16, 2, 16), (2,)).reshape(x.shape)
        np.testing.assert_allclose(out.data, grouped, atol=2e-2, err_msg="group_norm")
        return
    np.testing.assert_allclose(out.data, _reference(x.astype(np.float64), axes), atol=2e-2)
    if kind == "batch":
        true_var = x.astype(np.float64).var(axis=axes, ddof=1)
        np.testing.assert_allclose(var, 0.9 + 0.1 * true_var, rtol=1e-2, err_msg="running_var")
