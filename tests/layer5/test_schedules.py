"""Schedules over every step against torch.optim.lr_scheduler (warm-up + cosine as LinearLR then
CosineAnnealingLR in SequentialLR; OneCycleLR) or their closed forms written out here."""

import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR

from layer5_training.optim.schedules import (
    SCHEDULES,
    make_schedule,
    named_schedule,
    one_cycle,
    warmup_cosine,
    wsd,
)

LR = 0.3


def _optimizer(lr=LR):
    return torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr)


def _rates(scheduler, steps):
    """The rate each of ``steps`` optimizer steps uses."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _assert_close(ours, ref):
    assert len(ours) == len(ref)
    for t, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), f"step {t}: {a} vs {b}"


@pytest.mark.parametrize(("total", "warm", "floor"), [(100, 10, 0.0), (50, 0, 0.1), (37, 5, 0.2)])
def test_warmup_cosine_equals_linear_then_cosine_annealing(total, warm, floor):
    ours = _rates(warmup_cosine(_optimizer(), total, warm, min_lr_fraction=floor), total)
    opt = _optimizer()
    cosine = CosineAnnealingLR(opt, T_max=total - warm, eta_min=floor * LR)
    if warm:
        ramp = LinearLR(opt, start_factor=1 / (warm + 1), total_iters=warm)
        ref = SequentialLR(opt, [ramp, cosine], milestones=[warm])
    else:
        ref = cosine
    _assert_close(ours, _rates(ref, total))
    assert max(ours) == pytest.approx(LR) and ours[-1] < ours[warm] == pytest.approx(LR)


@pytest.mark.parametrize(
    ("total", "pct", "div", "final"), [(100, 0.3, 25.0, 1e4), (64, 0.25, 10.0, 100.0)]
)
def test_one_cycle_equals_torch_one_cycle_lr(total, pct, div, final):
    ours = _rates(one_cycle(_optimizer(), total, pct, div, final), total)
    opt = _optimizer()
    ref = OneCycleLR(
        opt,
        LR,
        total_steps=total,
        pct_start=pct,
        div_factor=div,
        final_div_factor=final,
        cycle_momentum=False,
    )
    _assert_close(ours, _rates(ref, total))


def test_inverse_sqrt_equals_the_noam_closed_form():
    w = 8
    ours = _rates(make_schedule("inverse_sqrt", _optimizer(), total_steps=200, warmup_steps=w), 200)
    ref = [LR * min((t + 1) / (w + 1), ((w + 1) / (t + 1)) ** 0.5) for t in range(200)]
    _assert_close(ours, ref)


@pytest.mark.parametrize("decay", ["linear", "cosine", "sqrt"])
def test_wsd_equals_its_closed_form(decay):
    total, warm, frac, floor = 100, 10, 0.3, 0.05
    ours = _rates(wsd(_optimizer(), total, warm, frac, floor, decay), total)
    shapes = {
        "linear": lambda p: 1 - (1 - floor) * p,
        "cosine": lambda p: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)),
        "sqrt": lambda p: 1 - (1 - floor) * math.sqrt(p),
    }
    ref = []
    for t in range(total):
        if t < warm:
            ref.append(LR * (t + 1) / (warm + 1))
        elif t < 70:
            ref.append(LR)
        else:
            ref.append(LR * shapes[decay]((t - 70) / 30))
    _assert_close(ours, ref)


def test_constant_and_make_schedule_dispatch():
    _assert_close(_rates(make_schedule("constant", _optimizer(), total_steps=5), 5), [LR] * 5)
    ramped = _rates(make_schedule("constant", _optimizer(), total_steps=6, warmup_steps=3), 6)
    _assert_close(ramped, [LR / 4, LR / 2, 3 * LR / 4, LR, LR, LR])
    for name in SCHEDULES:
        sched = make_schedule(name, _optimizer(), total_steps=20, warmup_steps=2)
        assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    a = _rates(make_schedule("one_cycle", _optimizer(), total_steps=40, warmup_steps=10), 40)
    _assert_close(a, _rates(one_cycle(_optimizer(), 40, pct_start=0.25), 40))
    b = _rates(named_schedule(_optimizer(), name="wsd", total_steps=40, warmup_fraction=0.1), 40)
    _assert_close(b, _rates(wsd(_optimizer(), 40, 4), 40))


def test_schedule_resumes_from_its_state_dict():
    straight = _rates(warmup_cosine(_optimizer(), 30, 5), 30)
    first = warmup_cosine(_optimizer(), 30, 5)
    head = _rates(first, 12)
    opt = _optimizer()
    second = warmup_cosine(opt, 30, 5)
    opt.load_state_dict(first.optimizer.state_dict())
    second.load_state_dict(first.state_dict())
    _assert_close(head + _rates(second, 18), straight)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda o: make_schedule("cosine", o, total_steps=10), "unknown schedule 'cosine'.*wsd"),
        (
            lambda o: make_schedule("wsd", o, total_steps=10, warmup_steps=11),
            "warmup_steps.*got 11",
        ),
        (lambda o: make_schedule("constant", o, total_steps=0), "total_steps must be > 0, got 0"),
        (lambda o: warmup_cosine(o, -5, 0), "total_steps must be > 0, got -5"),
        (lambda o: warmup_cosine(o, 10, 2, min_lr_fraction=1.5), r"min_lr_fraction .*got 1.5"),
        (lambda o: one_cycle(o, 10, pct_start=1.2), r"pct_start must be in \(0, 1\), got 1.2"),
        (lambda o: one_cycle(o, 3, pct_start=0.2), "pct_start \\* total_steps must be > 1"),
        (lambda o: wsd(o, 10, 5, decay_fraction=0.8), "exceed total_steps=10"),
        (lambda o: wsd(o, 10, 1, decay="exp"), "unknown WSD decay 'exp'"),
        (lambda o: make_schedule("inverse_sqrt", o, total_steps=10, warmup_steps=-1), "got -1"),
    ],
)
def test_bad_schedule_arguments_raise_naming_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build(_optimizer())
