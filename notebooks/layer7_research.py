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
# # Layer 7: LoRA, a fine-tune in a few numbers that folds back into the model
#
# Fine-tuning every weight of a large model is expensive to train and to ship. LoRA (Hu et al.
# 2021) freezes the pretrained `W` and learns a low-rank update beside it:
#
# `h = W x + (α/r) · B A x`,  with `A (r × in)`, `B (out × r)`, `r ≪ min(in, out)`
#
# `B` starts at zero, so the adapted model is *exactly* the pretrained one at step 0. After
# training, `W + (α/r) B A` is one matrix again: merging gives a plain `nn.Linear` with the same
# outputs and no extra cost at inference. `layer7_research.adaptation.lora` implements it; here we
# check both identities and fit a low-rank change with far fewer trainable numbers.

# %%
import os

import matplotlib.pyplot as plt
import torch
from torch import nn

from layer7_research.adaptation import LoRALinear, apply_lora, merge_lora, trainable_parameters

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
STEPS = 80 if SMALL else 600
torch.manual_seed(0)
torch.set_num_threads(1)

# %% [markdown]
# ## A "pretrained" model and a task it does not yet do
#
# The base is a two-layer network; the new task is the base's function plus a rank-2 change to
# its first layer (the situation LoRA assumes: the fine-tuning update has low intrinsic rank).

# %%
base = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
target = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
target.load_state_dict(base.state_dict())
with torch.no_grad():
    target[0].weight += 0.5 * torch.randn(64, 2) @ torch.randn(2, 64) / 8  # a rank-2 update
x = torch.randn(256 if SMALL else 1024, 64)
with torch.no_grad():
    y = target(x)

model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8))
model.load_state_dict(base.state_dict())
adapted = apply_lora(model, ["0"], r=2, alpha=4.0)
print("adapted layers:", adapted, "|", model[0])

# %% [markdown]
# ## Identity 1: at initialisation the adapted model is the base model
#
# `B = 0`, so `(α/r) B A x = 0` for every input: not approximately, exactly.

# %%
with torch.no_grad():
    assert torch.equal(model(x), base(x))
full = sum(p.numel() for p in base.parameters())
print(
    f"trainable: {trainable_parameters(model):,} of {full:,} numbers "
    f"({trainable_parameters(model) / full:.1%})"
)
assert trainable_parameters(model) == 2 * (64 + 64)  # A (2 x 64) and B (64 x 2)

# %% [markdown]
# ## Training only A and B

# %%
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
losses = []
for _step in range(STEPS):
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
base_loss = nn.functional.mse_loss(base(x), y).item()
print(f"MSE to the new task: base {base_loss:.2e}, LoRA after {STEPS} steps {losses[-1]:.2e}")
assert torch.equal(model[2].weight, base[2].weight)  # frozen weights did not move
assert losses[-1] < 0.1 * base_loss

# %% [markdown]
# ## Identity 2: merged, it is one plain linear layer with the same outputs
#
# `merge_lora` folds `(α/r) B A` into `W` and puts the plain `nn.Linear` back: the original
# architecture and state-dict names. In float32 the merged and unmerged outputs differ by
# rounding only.

# %%
merged = merge_lora(model)
with torch.no_grad():
    diff = (merged(x) - model(x)).abs().max().item()
    delta = model[0].delta_weight()
print(
    type(merged[0]).__name__,
    f"max |merged − adapted| = {diff:.1e}; rank of ΔW = {torch.linalg.matrix_rank(delta).item()}",
)
assert isinstance(merged[0], nn.Linear) and not isinstance(merged[0], LoRALinear)
assert diff < 1e-5 and torch.linalg.matrix_rank(delta).item() <= 2

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.semilogy(losses, label=f"LoRA r=2 ({trainable_parameters(model)} trainable numbers)")
ax.axhline(base_loss, color="grey", linestyle="--", label="base model, untouched")
ax.set(title="fitting a rank-2 change with LoRA", xlabel="step", ylabel="MSE to the new task")
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** `python -m layer7_research lora_finetune` applies this to layer 4's
# GPT (attention projections), checked against the `peft` library; the same layer reproduces
# grokking, aligns the GPT with DPO and PPO, quantises and distils it.
