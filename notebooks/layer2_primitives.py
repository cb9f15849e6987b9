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
# # Layer 2: a convolution is a matrix product in disguise
#
# `layer2_primitives.conv2d` computes, for input `x (N, C_in, H, W)` and weight
# `w (C_out, C_in, kH, kW)`,
#
# `y[n, o, i, j] = b[o] + Σ_{c,u,v} w[o, c, u, v] · x_pad[n, c, s·i + u, s·j + v]`
#
# but never loops over pixels: *im2col* lays every `kH × kW` patch out as a column, and the sum
# becomes one BLAS matrix product `W @ cols`. Its backward pass is derived by hand and registered
# as one node of layer 1's `Tensor` (`Tensor.from_op`). No PyTorch anywhere in this layer: here
# we check it against the formula written as plain loops, and its gradient against finite
# differences.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from layer0_math import numerical_gradient
from layer1_autograd import Tensor
from layer2_primitives import conv2d

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
SIZE = 12 if SMALL else 24
rng = np.random.default_rng(0)

# %% [markdown]
# ## The formula, as loops
#
# Six nested loops, exactly the sum above: slow, obviously right.


# %%
def conv2d_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, c_out, h_out, w_out))
    for i_n in range(n):
        for o in range(c_out):
            for i in range(h_out):
                for j in range(w_out):
                    patch = xp[i_n, :, stride * i : stride * i + kh, stride * j : stride * j + kw]
                    y[i_n, o, i, j] = b[o] + np.sum(w[o] * patch)
    return y


x = rng.standard_normal((2, 3, SIZE, SIZE))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
for stride, pad in [(1, 1), (2, 0)]:
    t0 = time.perf_counter()
    ours = conv2d(Tensor(x), Tensor(w), Tensor(b), stride=stride, padding=pad).data
    t1 = time.perf_counter()
    loops = conv2d_loops(x, w, b, stride, pad)
    t2 = time.perf_counter()
    print(
        f"stride {stride}, padding {pad}: output {ours.shape}, max |im2col - loops| = "
        f"{np.abs(ours - loops).max():.1e}; "
        f"im2col {1e3 * (t1 - t0):.2f} ms, loops {1e3 * (t2 - t1):.1f} ms"
    )
    assert ours.shape == loops.shape and np.allclose(ours, loops, rtol=0, atol=1e-12)

# %% [markdown]
# ## The hand-derived backward against finite differences
#
# Backward: `∂L/∂W = gy @ colsᵀ`, `∂L/∂cols = Wᵀ @ gy`, and *col2im* adds each patch's gradient
# back where the patch came from. We take `L = Σ y ⊙ r` for a fixed random `r` (so `∂L/∂y = r`)
# and compare the engine's `∂L/∂x` and `∂L/∂w` with central differences on a small input.

# %%
xs, ws = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
r = rng.standard_normal((1, 3, 3, 3))  # the output's shape for stride 2, padding 1

xt, wt = Tensor(xs, requires_grad=True), Tensor(ws, requires_grad=True)
(conv2d(xt, wt, stride=2, padding=1) * Tensor(r)).sum().backward()
num_x = numerical_gradient(
    lambda v: (conv2d(Tensor(v), Tensor(ws), stride=2, padding=1).data * r).sum(), xs
)
num_w = numerical_gradient(
    lambda v: (conv2d(Tensor(xs), Tensor(v), stride=2, padding=1).data * r).sum(), ws
)
print(f"max |∂L/∂x - numeric| = {np.abs(xt.grad - num_x).max():.1e}")
print(f"max |∂L/∂w - numeric| = {np.abs(wt.grad - num_w).max():.1e}")
assert np.allclose(xt.grad, num_x, atol=1e-7) and np.allclose(wt.grad, num_w, atol=1e-7)

# %% [markdown]
# ## What a filter sees
#
# A hand-made filter makes the operation visible: the Sobel kernel `[[1, 0, −1], [2, 0, −2],
# [1, 0, −1]]` responds to vertical edges. Deep-learning "convolution" is a cross-correlation
# (the kernel is not flipped), so the response at a column is (left neighbours − right
# neighbours): on an image of a bright square it is negative on the left edge (dark → bright),
# positive on the right edge and zero inside. A trained CNN's first layer
# learns filters like this one (`python -m layer2_primitives visualize` draws them).

# %%
image = np.zeros((1, 1, 32, 32))
image[0, 0, 8:24, 8:24] = 1.0
sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])[None, None]
edges = conv2d(Tensor(image), Tensor(sobel), padding=1).data[0, 0]
assert edges[16, 7] < 0 and edges[16, 24] > 0 and edges[16, 16] == 0

fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
axes[0].imshow(image[0, 0], cmap="gray")
axes[0].set(title="input: a bright square", xlabel="column", ylabel="row")
im = axes[1].imshow(edges, cmap="RdBu")
axes[1].set(title="conv2d with a vertical Sobel filter", xlabel="column", ylabel="row")
fig.colorbar(im, ax=axes[1], label="response")
plt.show()

# %% [markdown]
# **What to take upward.** Every primitive in this layer (pooling, normalisation, attention,
# recurrent cells) is built the same way: a vectorised forward, a backward derived on paper, one
# graph node. Layer 3 ports them to PyTorch and proves the ports equal; `tests/layer2` checks
# every forward and gradient against PyTorch at float64.
