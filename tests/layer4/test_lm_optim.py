"""The GPT recipe: AdamW decays matrices only (against two plain AdamWs), and the warm-up cosine
schedule with a floor equals nanoGPT's get_lr written out here."""

import math

import pytest
import torch
from torch import nn

from layer4_architectures.sequence.lm_optim import adamw, warmup_cosine_floor


def nanogpt_lr(step, lr, warm, total, min_lr):
    """nanoGPT train.py's get_lr, with warm-up (step + 1)/warm."""
    if step < warm:
        return lr * (step + 1) / warm
    if step > total:
        return min_lr
    ratio = (step - warm) / (total - warm)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_the_schedule_equals_nanogpts_get_lr():
    p = nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.SGD([p], lr=1e-3)
    sched = warmup_cosine_floor(opt, 2000, warmup_fraction=0.05, min_lr_fraction=0.1)
    got = []
    for _ in range(2003):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [nanogpt_lr(t, 1e-3, 100, 2000, 1e-4) for t in range(2003)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_adamw_decays_matrices_and_not_vectors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    twin = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    twin.load_state_dict(model.state_dict())
    ours = adamw(model.parameters(), lr=0.1, weight_decay=0.5)
    matrices = [p for p in twin.parameters() if p.dim() >= 2]
    vectors = [p for p in twin.parameters() if p.dim() < 2]
    reference = [
        torch.optim.AdamW(matrices, lr=0.1, betas=(0.9, 0.95), weight_decay=0.5),
        torch.optim.AdamW(vectors, lr=0.1, betas=(0.9, 0.95), weight_decay=0.0),
    ]
    x = torch.randn(8, 4)
    for _ in range(3):
        for m, opts in ((model, [ours]), (twin, reference)):
            m(x).square().sum().backward()
            for o in opts:
                o.step()
                o.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [g["weight_decay"] for g in ours.param_groups] == [0.5, 0.0]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="no parameters"):
        adamw([])
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        adamw([nn.Parameter(torch.zeros(2))], weight_decay=-1.0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        warmup_cosine_floor(opt, 100, warmup_fraction=1.0)
    with pytest.raises(ValueError, match="min_lr_fraction"):
        warmup_cosine_floor(opt, 100, min_lr_fraction=2.0)
    with pytest.raises(ValueError, match="total_steps must be >= 2"):
        warmup_cosine_floor(opt, 1)
