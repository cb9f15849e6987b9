"""DynamicLossScaler against torch.amp.GradScaler("cpu") on one scripted sequence of clean,
inf and nan gradients: the scale after every update, the skipped steps and the parameters."""

import math

import pytest
import torch

from layer5_training.optim.clipping import clip_grad_norm_
from layer5_training.optim.loss_scaler import DynamicLossScaler

# per step: None (clean), or the value written into one gradient element after backward
SCRIPT = [
    None,
    None,
    None,
    math.inf,
    None,
    None,
    None,
    math.nan,
    -math.inf,
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    math.inf,
    None,
    None,
    None,
]


def _train(scaler, script=SCRIPT, clip=None):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9)
    scales, skipped = [], []
    for t, bad in enumerate(script):
        opt.zero_grad()
        scaler.scale(((x @ w + b - y) ** 2).mean()).backward()
        if bad is not None:
            w.grad[1, 2] = bad
        if clip is not None:
            scaler.unscale_(opt)
            clip_grad_norm_([w, b], clip)
        before = w.detach().clone()
        scaler.step(opt)
        if torch.equal(before, w.detach()):
            skipped.append(t)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales, skipped, w.detach(), b.detach()


@pytest.mark.parametrize("clip", [None, 0.5])
def test_scaler_behaves_as_torch_grad_scaler(clip):
    kw = {"init_scale": 2.0**10, "growth_interval": 3}
    ours = _train(DynamicLossScaler(**kw), clip=clip)
    theirs = _train(torch.amp.GradScaler("cpu", **kw), clip=clip)
    assert ours[0] == theirs[0]  # scale history
    assert ours[1] == theirs[1] == [3, 7, 8, 16]  # skipped steps
    assert torch.equal(ours[2], theirs[2]) and torch.equal(ours[3], theirs[3])
    assert max(ours[0]) > 2.0**10 and min(ours[0]) < 2.0**10  # it grew and it backed off


def test_step_reports_skips_and_scale_does_not_overflow_float32():
    scaler = DynamicLossScaler(init_scale=2.0**127, growth_interval=1)
    w = torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    scaler.scale(w.sum() * 2.0**-127).backward()
    assert scaler.step(opt) is True
    scaler.update()
    assert scaler.get_scale() == 2.0**127  # 2^128 is inf in float32: growth refused, as torch
    w.grad[0] = math.nan
    assert scaler.step(opt) is False
    scaler.update()
    assert scaler.get_scale() == 2.0**126


def test_state_dict_resumes_the_schedule_and_disabled_is_a_pass_through():
    kw = {"init_scale": 8.0, "growth_interval": 3}
    straight = _train(DynamicLossScaler(**kw))[0]
    first = DynamicLossScaler(**kw)
    _train(first, SCRIPT[:11])  # stops mid-streak: the growth tracker must carry over
    second = DynamicLossScaler()
    second.load_state_dict(first.state_dict())
    assert _train(second, SCRIPT[11:])[0] == straight[11:]
    assert set(first.state_dict()) == set(torch.amp.GradScaler("cpu").state_dict())
    off = DynamicLossScaler(enabled=False)
    loss = torch.tensor(3.0)
    assert off.scale(loss) is loss and off.get_scale() == 1.0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"init_scale": 0.0}, "init_scale must be > 0, got 0.0"),
        ({"growth_factor": 1.0}, "growth_factor must be > 1, got 1.0"),
        ({"backoff_factor": 1.5}, r"backoff_factor must be in \(0, 1\), got 1.5"),
        ({"growth_interval": 0}, "growth_interval must be an int >= 1, got 0"),
    ],
)
def test_bad_scaler_arguments_raise(kw, message):
    with pytest.raises(ValueError, match=message):
        DynamicLossScaler(**kw)


def test_misuse_raises():
    scaler = DynamicLossScaler()
    w = torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(RuntimeError, match="update\\(\\) before any"):
        scaler.update()
    scaler.scale(w.sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already called"):
        scaler.unscale_(opt)
