"""BatchNorm1d/2d, LayerNorm, GroupNorm against torch: outputs, gradients, running statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from tests.layer2.torch_compare import assert_close, compare_grads, copy_params


def _randomise_affine(theirs: torch.nn.Module, rng) -> None:
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.normal(size=tuple(p.shape))))


def _step(ours, theirs, x, rng):
    """One forward/backward of both; compare output, input grad and parameter grads."""
    ours.zero_grad()
    theirs.zero_grad()
    X, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(X), theirs(tx)
    g = rng.normal(size=y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, f"{type(ours).__name__} output")
    assert_close(X.grad, tx.grad, f"{type(ours).__name__} grad x")
    compare_grads(ours, theirs)


@settings(max_examples=20, deadline=None)
@given(
    dims=st.sampled_from(["1d_nc", "1d_ncl", "2d"]),
    n=st.integers(1, 4),
    c=st.integers(1, 4),
    spatial=st.integers(1, 4),
    momentum=st.sampled_from([0.1, 0.3, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_batch_norm_train_steps_then_eval(dims, n, c, spatial, momentum, seed):
    rng = np.random.default_rng(seed)
    shape = {"1d_nc": (n, c), "1d_ncl": (n, c, spatial), "2d": (n, c, spatial, spatial + 1)}[dims]
    if np.prod(shape) // c < 2:
        n = 2
        shape = (n,) + shape[1:]
    cls, tcls = (
        (BatchNorm2d, torch.nn.BatchNorm2d) if dims == "2d" else (BatchNorm1d, torch.nn.BatchNorm1d)
    )
    ours, theirs = cls(c, momentum=momentum, dtype=np.float64), tcls(c, momentum=momentum).double()
    _randomise_affine(theirs, rng)
    copy_params(ours, theirs)
    for _ in range(3):  # several training steps: the running statistics must track torch's
        _step(ours, theirs, rng.normal(size=shape) * 3 + 1, rng)
        assert_close(ours.running_mean, theirs.running_mean, "running_mean")
        assert_close(ours.running_var, theirs.running_var, "running_var (unbiased)")
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    _step(ours, theirs, rng.normal(size=shape), rng)  # eval: uses the running statistics
    assert ours.num_batches_tracked == 3


def test_batch_norm_needs_two_values_per_channel_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(3, dtype=np.float64)(Tensor(np.zeros((1, 3, 1, 1))))
    bn = BatchNorm2d(3, dtype=np.float64).eval()
    assert bn(Tensor(np.zeros((1, 3, 1, 1)))).shape == (1, 3, 1, 1)  # fine in eval mode


def test_batch_norm_channel_mismatch():
    with pytest.raises(
        ValueError, match=r"BatchNorm2d\(4\) got input \(2, 3, 5, 5\) with 3 channels"
    ):
        BatchNorm2d(4, dtype=np.float64)(Tensor(np.zeros((2, 3, 5, 5))))
    with pytest.raises(ValueError, match="must have 2 or 3 dims"):
        BatchNorm1d(3, dtype=np.float64)(Tensor(np.zeros((2, 3, 5, 5))))


@settings(max_examples=20, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    norm=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_torch(lead, norm, seed):
    rng = np.random.default_rng(seed)
    ours, theirs = LayerNorm(norm, dtype=np.float64), torch.nn.LayerNorm(norm).double()
    _randomise_affine(theirs, rng)
    copy_params(ours, theirs)
    _step(ours, theirs, rng.normal(size=(*lead, *norm)) * 2, rng)


@settings(max_examples=20, deadline=None)
@given(
    groups=st.integers(1, 3),
    per_group=st.integers(1, 3),
    n=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_group_norm_matches_torch(groups, per_group, n, spatial, seed):
    rng = np.random.default_rng(seed)
    c = groups * per_group
    if per_group * int(np.prod(spatial)) < 2:
        spatial = [*spatial, 2]
    ours, theirs = GroupNorm(groups, c, dtype=np.float64), torch.nn.GroupNorm(groups, c).double()
    _randomise_affine(theirs, rng)
    copy_params(ours, theirs)
    _step(ours, theirs, rng.normal(size=(n, c, *spatial)), rng)


def test_norm_bad_shapes():
    with pytest.raises(ValueError, match="does not end with normalized_shape"):
        LayerNorm(4, dtype=np.float64)(Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"GroupNorm\(6 channels\) got input \(2, 4, 3\)"):
        GroupNorm(2, 6, dtype=np.float64)(Tensor(np.zeros((2, 4, 3))))
