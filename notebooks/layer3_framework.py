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
# # Layer 3: PyTorch, proven equal to the scratch layers, and one trainer for everything above
#
# Layers 1–2 built autograd and the primitives in numpy. Layer 3 moves to PyTorch, but only after
# proving it computes the same thing: each scratch model has a PyTorch *twin* with the same
# parameter names and layouts (`layer3_framework.ports`), which loads the scratch weights and
# must give the same outputs. Then every later layer trains through one `Trainer`: the loop,
# evaluation, checkpoints, logging and exact resumption written once.
#
# This notebook ports a layer 1 MLP and checks the twin, then trains a small CNN on a slice of
# real MNIST with the `Trainer`, twice from the same seed, to see that the run is reproducible.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import layer1_autograd as l1
from layer0_math.datasets import load_mnist
from layer3_framework import (
    ImageDataset,
    ImageTransform,
    Trainer,
    TrainerConfig,
    build_loader,
    seed_everything,
)
from layer3_framework.ports import port

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
N_TRAIN, N_TEST, STEPS = (640, 500, 30) if SMALL else (8192, 2000, 300)
torch.set_num_threads(1)  # small models: one thread is fastest, and runs are bit-reproducible

# %% [markdown]
# ## A port that proves itself
#
# `port(scratch)` builds the twin and copies the weights across by name. In float64 the two
# forward passes agree to rounding error (about 1e-15): any mistake in a layout (a transposed
# weight, a bias on the wrong axis) would show up as a difference of order 1.

# %%
scratch = l1.MLP([20, 32, 10], activation="relu", rng=np.random.default_rng(0), dtype=np.float64)
twin = port(scratch)
x = np.random.default_rng(1).standard_normal((16, 20))
diff = np.abs(scratch(l1.Tensor(x)).data - twin(torch.from_numpy(x)).detach().numpy()).max()
print(twin)
print(f"max |scratch - torch| = {diff:.1e}")
assert diff < 1e-12

# %% [markdown]
# ## The trainer on real data
#
# MNIST through layer 3's data pipeline: `ImageDataset` normalises uint8 images with a
# `ImageTransform` (mean 0.1307, std 0.3081), `build_loader` shuffles with a seeded, resumable
# sampler. The `Trainer` takes a plain classifier on `(x, y)` batches, an optimizer and a
# `TrainerConfig`, and returns the final metrics.

# %%
x_train, y_train = load_mnist("train")
x_test, y_test = load_mnist("test")
transform = ImageTransform(mean=[0.1307], std=[0.3081])
train_set = ImageDataset(x_train[:N_TRAIN], y_train[:N_TRAIN], transform)
test_set = ImageDataset(x_test[:N_TEST], y_test[:N_TEST], transform)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 8, 14, 14)
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 7, 7)
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )  # fmt: skip


def train_once(seed: int) -> tuple[Trainer, dict, dict]:
    seed_everything(seed)
    model = small_cnn()
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        build_loader(train_set, 64, shuffle=True, seed=seed),
        TrainerConfig(max_steps=STEPS, log_every=5, progress=False),
        eval_loader=build_loader(test_set, 250, shuffle=False),
    )
    before = trainer.evaluate()
    return trainer, before, trainer.fit()


trainer, before, final = train_once(seed=0)
print(
    f"test accuracy {before['accuracy']:.3f} before, "
    f"{final['eval/accuracy']:.3f} after {STEPS} steps"
)
assert final["eval/accuracy"] > 0.7 and final["eval/loss"] < before["loss"]

# %% [markdown]
# ## Same seed, same run
#
# Seeding (`seed_everything`), a sampler whose order is a function of (seed, epoch) and one
# thread make the run a pure function of its config: a second run gives the same loss at every
# logged step, to the last bit.

# %%
again, _, _ = train_once(seed=0)
losses = [(h["step"], h["train/loss"]) for h in trainer.history if "train/loss" in h]
losses_again = [(h["step"], h["train/loss"]) for h in again.history if "train/loss" in h]
print("first logged losses:", [round(v, 4) for _, v in losses[:4]])
assert losses == losses_again

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(*zip(*losses, strict=False), marker="o", label="run 1")
ax.plot(*zip(*losses_again, strict=False), linestyle="--", label="run 2 (same seed)")
ax.set(
    title="small CNN on an MNIST slice, trained by layer 3's Trainer",
    xlabel="step",
    ylabel="training loss (mean over 5 steps)",
)
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** Layers 4–7 never write a training loop: each model is a *task*
# (its loss and metrics) handed to this `Trainer`, configured by Hydra
# (`python -m layer3_framework.train model=cnn data=cifar10`), checkpointed as self-describing
# safetensors that `load_model` rebuilds without the dataset.
