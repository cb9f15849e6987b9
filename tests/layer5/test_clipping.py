"""Clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (norm types 2, 1, inf;
the returned pre-clip norm), with a parameter whose grad is None among the rest."""

import math

import pytest
import torch

from layer5_training.optim.clipping import clip_grad_norm_, clip_grad_value_, grad_norm


def _params(scale):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 4), (4,), (3, 2, 2)]
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=g, dtype=torch.float64)
    params.append(torch.zeros(3, dtype=torch.float64, requires_grad=True))  # grad None
    return params


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
def test_clip_grad_norm_equals_torch(norm_type, max_norm):
    ours, theirs = _params(3.0), _params(3.0)
    n_ours = clip_grad_norm_(ours, max_norm, norm_type)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=False)
    assert n_ours.item() == pytest.approx(n_theirs.item(), rel=1e-12)
    for p, q in zip(ours, theirs, strict=True):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-12, atol=0)
    after = grad_norm(ours, norm_type).item()
    assert after == pytest.approx(min(n_ours.item(), max_norm), rel=1e-5)


def test_clip_grad_value_equals_torch_and_generators_work():
    ours, theirs = _params(3.0), _params(3.0)
    clip_grad_value_(iter(ours), 1.5)
    torch.nn.utils.clip_grad_value_(theirs, 1.5, foreach=False)
    for p, q in zip(ours[:3], theirs[:3], strict=True):
        assert torch.equal(p.grad, q.grad)
    assert max(p.grad.abs().max().item() for p in ours[:3]) == 1.5
    gen = _params(3.0)
    n = clip_grad_norm_((p for p in gen), 0.1)
    assert n.item() > 0.1 and grad_norm(gen).item() == pytest.approx(0.1, rel=1e-5)


def test_nonfinite_norm_and_bad_arguments():
    params = _params(1.0)
    params[0].grad[0, 0] = math.inf
    with pytest.raises(RuntimeError, match="total norm of order 2.0 .* is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm must be >= 0, got -1"):
        clip_grad_norm_(_params(1.0), -1)
    with pytest.raises(ValueError, match="norm_type must be > 0 .*got 0"):
        grad_norm(_params(1.0), 0)
    with pytest.raises(ValueError, match="clip_value must be >= 0, got -2"):
        clip_grad_value_(_params(1.0), -2)
    assert grad_norm([torch.zeros(2, requires_grad=True)]).item() == 0.0
