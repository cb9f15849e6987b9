# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (dlstack)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Layer 5: an optimiser written out is an optimiser understood
#
# `layer5_training.optim` writes every optimiser the stack uses as a `torch.optim.Optimizer`
# subclass, line by line from its paper, and proves each equal to PyTorch's own. AdamW is the one
# every Transformer recipe uses:
#
# ```
# θ ← θ (1 − η λ)                          decoupled weight decay (Loshchilov & Hutter)
# m_t = β₁ m_{t−1} + (1 − β₁) g            first moment
# v_t = β₂ v_{t−1} + (1 − β₂) g²           second moment
# θ ← θ − η/(1 − β₁ᵗ) · m_t / (√v_t / √(1 − β₂ᵗ) + ε)
# ```
#
# We run ours and `torch.optim.AdamW` side by side from the same weights on the same batches and
# compare the weights after every step. Then we see what "decoupled" buys over Adam's L2 decay.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from layer5_training.optim.adam import Adam, AdamW

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
STEPS = 25 if SMALL else 300
torch.set_num_threads(1)


def model_and_batches(seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    w_true = torch.randn(8, 1, generator=g, dtype=torch.float64)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(32, 8, generator=g, dtype=torch.float64)
        batches.append((x, torch.sin(x @ w_true)))
    return model, batches


def train(make_opt, seed: int = 0) -> tuple[list[torch.Tensor], list[float]]:
    """Train a fresh copy; the flattened weights and the loss after every step."""
    model, batches = model_and_batches(seed)
    opt = make_opt(model.parameters())
    weights, losses = [], []
    for x, y in batches:
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())
        losses.append(loss.item())
    return weights, losses


# %% [markdown]
# ## Ours against PyTorch's, step by step
#
# In float64 with the same hyper-parameters the two trajectories agree to rounding error at every
# step; a wrong bias correction or a decay applied after instead of before the step would drift
# apart immediately (try it: edit `adam.py` and rerun this cell).

# %%
hyper = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
ours_w, ours_loss = train(lambda p: AdamW(p, **hyper))
ref_w, ref_loss = train(lambda p: torch.optim.AdamW(p, **hyper))
per_step = [float((a - b).abs().max()) for a, b in zip(ours_w, ref_w, strict=True)]
print(
    f"max |θ_ours − θ_torch| over {STEPS} steps: {max(per_step):.1e}; "
    f"loss {ours_loss[0]:.4f} -> {ours_loss[-1]:.4f}"
)
assert max(per_step) < 1e-12 and ours_loss[-1] < ours_loss[0]

# %% [markdown]
# ## Decoupled decay is not L2
#
# Adam with `weight_decay` adds `λθ` to the gradient, so the decay passes through `1/√v`: a weight
# with large gradients is barely shrunk. AdamW shrinks every weight by the same `(1 − ηλ)`. Same
# λ, different optimisers: the weights end up measurably apart (and our Adam matches PyTorch's
# Adam just as closely).

# %%
adam_w, adam_loss = train(lambda p: Adam(p, **hyper))
torch_adam_w, _ = train(lambda p: torch.optim.Adam(p, **hyper))
gap = float((adam_w[-1] - ours_w[-1]).abs().max())
print(
    f"our Adam vs torch Adam: {float((adam_w[-1] - torch_adam_w[-1]).abs().max()):.1e}; "
    f"Adam+L2 vs AdamW after {STEPS} steps: {gap:.3f}"
)
assert float((adam_w[-1] - torch_adam_w[-1]).abs().max()) < 1e-12 and gap > 1e-3

# %%
fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
ax.plot(ours_loss, label="our AdamW")
ax.plot(ref_loss, linestyle="--", label="torch.optim.AdamW")
ax.plot(adam_loss, alpha=0.7, label="our Adam (L2 decay)")
ax.set(title="training loss (float64)", xlabel="step", ylabel="MSE", yscale="log")
ax.legend()
ax_diff.semilogy(np.maximum(per_step, 1e-18), label="AdamW: ours − torch")
ax_diff.set(title="largest weight difference per step", xlabel="step", ylabel="max |Δθ|")
ax_diff.legend()
plt.show()

# %% [markdown]
# **What to take upward.** The same proof covers SGD, RMSprop, Adagrad, Lion, Adafactor, the
# schedules, clipping and the fp16 loss scaler (`tests/layer5`); `python -m layer5_training`
# then compares them on real models, runs data parallelism with `torchrun` and tunes with Optuna.
