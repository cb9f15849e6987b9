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
# # Layer 1: backpropagation is the chain rule, run backwards over a graph
#
# `layer1_autograd.Value` holds one float and remembers how it was computed. Every operation
# knows only its *local* derivatives (for `c = a·b`: `∂c/∂a = b`, `∂c/∂b = a`); `backward()`
# visits the graph in reverse topological order and applies the chain rule,
# `∂L/∂a += ∂L/∂c · ∂c/∂a`. The `+=` is the whole multivariate chain rule: a value used twice
# receives the sum of the gradients of its uses.
#
# We check the engine against an independent method (finite differences from layer 0), then let
# it train a small network where every multiply is a graph node.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

from layer0_math import numerical_gradient
from layer1_autograd import Value, ValueMLP, hinge_loss
from layer1_autograd.training import ScalarSGD, fit

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
N_TRAIN, STEPS, HIDDEN, GRID = (100, 40, 8, 20) if SMALL else (300, 300, 16, 40)

# %% [markdown]
# ## The engine against finite differences
#
# `f(a, b) = tanh(a·b + a²/b) · exp(−b)` uses `a` three times. The central difference
# `(f(x + h eᵢ) − f(x − h eᵢ)) / 2h` has error `O(h²)`; with `h = 1e-6` it agrees with the exact
# gradient to about 1e-9, so a disagreement larger than that is a bug in a local derivative.


# %%
def f_values(a: Value, b: Value) -> Value:
    return (a * b + a**2 / b).tanh() * (-b).exp()


a, b = Value(0.7), Value(1.3)
out = f_values(a, b)
out.backward()
engine = np.array([a.grad, b.grad])
numeric = numerical_gradient(
    lambda x: f_values(Value(x[0]), Value(x[1])).data, np.array([0.7, 1.3])
)
print(f"f = {out.data:.6f}")
print(f"engine  ∂f/∂a, ∂f/∂b = {engine}")
print(f"numeric ∂f/∂a, ∂f/∂b = {numeric}")
print(f"max difference {np.abs(engine - numeric).max():.1e}")
assert np.allclose(engine, numeric, rtol=0, atol=1e-8)

# %% [markdown]
# ## A network of Values learns two moons
#
# A 2-h-h-1 ReLU MLP of `Value`s (`ValueMLP`), the max-margin loss `mean(max(0, 1 − y·s))`,
# SGD with momentum, trained by layer 1's one loop (`fit`). Each step builds a fresh graph of a
# few thousand nodes and walks it backwards.

# %%
rng = np.random.default_rng(0)
x, y01 = make_moons(N_TRAIN, noise=0.1, random_state=0)
x = (x - x.mean(axis=0)) / x.std(axis=0)  # standardised inputs
y = 2 * y01 - 1  # labels ±1 for the hinge loss
model = ValueMLP([2, HIDDEN, HIDDEN, 1], activation="relu", rng=rng)


def loss_fn(step: int) -> Value:
    idx = rng.choice(N_TRAIN, 32, replace=False)
    scores = [model(p.tolist())[0] for p in x[idx]]
    return hinge_loss(scores, y[idx].tolist())


def accuracy() -> float:
    scores = np.array([model(p.tolist())[0].data for p in x])
    return float(np.mean(np.where(scores > 0, 1, -1) == y))


before = accuracy()
history = fit(loss_fn, ScalarSGD(model.parameters(), lr=0.1, momentum=0.9), STEPS)
after = accuracy()
print(
    f"{len(model.parameters())} parameters; "
    f"accuracy {before:.2f} before, {after:.2f} after {STEPS} steps"
)
assert after > 0.8 and after > before

# %%
gx, gy = np.meshgrid(np.linspace(-2.5, 2.5, GRID), np.linspace(-2.5, 2.5, GRID))
grid = np.array([model(p.tolist())[0].data for p in np.c_[gx.ravel(), gy.ravel()]])
fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
ax.contourf(gx, gy, grid.reshape(gx.shape) > 0, levels=1, cmap="RdBu", alpha=0.35)
ax.scatter(
    x[:, 0], x[:, 1], c=y, cmap="RdBu", s=12, edgecolors="k", lw=0.3, label="training points"
)
ax.set(
    title=f"ValueMLP decision boundary (accuracy {after:.2f})",
    xlabel="x₁ (standardised)",
    ylabel="x₂ (standardised)",
)
ax.legend(loc="lower left")
ax_loss.plot(history.losses, label="hinge loss")
ax_loss.set(title="training loss", xlabel="step", ylabel="loss")
ax_loss.legend()
plt.show()

# %% [markdown]
# **What to take upward.** `layer1_autograd.Tensor` is the same engine over numpy arrays (one node
# per array operation instead of per number), and layer 2 builds every primitive on it. The
# hand-derived MLP (`manual_mlp.py`) writes the same backward pass out by hand and is checked
# against the engine: `python -m layer1_autograd mlp_manual_backprop`.
