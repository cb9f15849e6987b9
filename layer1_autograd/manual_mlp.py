r"""A three-layer MLP whose backward pass is derived and written out by hand, in plain numpy.

The network (sizes 784-h-h-10, weights in PyTorch's (out, in) layout, N examples per batch):

    z1 = x W1ᵀ + b1     a1 = relu(z1)        x (N, 784), W1 (h, 784)  -> z1, a1 (N, h)
    z2 = a1 W2ᵀ + b2    a2 = relu(z2)        W2 (h, h)                -> z2, a2 (N, h)
    z3 = a2 W3ᵀ + b3    p = softmax(z3)      W3 (10, h)               -> z3, p  (N, 10)
    L  = −(1/N) ∑_n log p[n, y_n]

Backward, one layer at a time. Write δ_k = ∂L/∂z_k (same shape as z_k).

1. Softmax + cross-entropy. For one example, log p_c = z_c − log ∑_j e^{z_j}, so
   ∂(−log p_y)/∂z_c = p_c − [c = y]. Averaging over the batch divides by N:

       δ3 = (p − Y) / N                      Y = one-hot(y)  (N, 10)

   (Fusing softmax with the loss matters: the Jacobian of softmax alone is diag(p) − p pᵀ, but
   its product with ∂L/∂p = −Y/p collapses to this simple, stable difference.)

2. An affine layer z = a Wᵀ + b, i.e. z[n, i] = ∑_j a[n, j] W[i, j] + b[i]. Then

       ∂L/∂W[i, j] = ∑_n δ[n, i] a[n, j]      →   dW = δᵀ a          (out, in)
       ∂L/∂b[i]    = ∑_n δ[n, i]              →   db = δ summed over the batch  (out,)
       ∂L/∂a[n, j] = ∑_i δ[n, i] W[i, j]      →   da = δ W            (N, in)

   so  dW3 = δ3ᵀ a2,  db3 = ∑_n δ3,  da2 = δ3 W3.

3. ReLU passes the gradient where its input was positive and blocks it elsewhere:

       δ2 = da2 ⊙ [z2 > 0]

4. Repeat 2-3 downwards:  dW2 = δ2ᵀ a1,  db2 = ∑_n δ2,  da1 = δ2 W2,  δ1 = da1 ⊙ [z1 > 0],
   dW1 = δ1ᵀ x,  db1 = ∑_n δ1.  (No gradient with respect to the input x is needed.)

Each backward matrix product costs as much as its forward one, so a training step is about three
forward passes of work: this is what any autograd engine does, minus the bookkeeping. Parameter
names match :class:`layer1_autograd.nn.MLP` ("layers.0.weight", ...), so the tensor engine (and
PyTorch) can load the same weights and must produce the same gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ManualMLP", "ForwardCache"]

NAMES = tuple(f"layers.{i}.{kind}" for i in range(3) for kind in ("weight", "bias"))


@dataclass
class ForwardCache:
    """What the backward pass needs from the forward pass."""

    x: np.ndarray  # (N, D)
    z1: np.ndarray  # (N, h)
    a1: np.ndarray  # (N, h)
    z2: np.ndarray  # (N, h)
    a2: np.ndarray  # (N, h)
    p: np.ndarray  # (N, C) softmax probabilities


class ManualMLP:
    """784-h-h-10 ReLU network with ``forward``, ``loss`` and a hand-written ``backward``."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        missing = [n for n in NAMES if n not in params]
        if missing:
            raise KeyError(f"ManualMLP needs parameters {list(NAMES)}; missing {missing}")
        self.params = {n: params[n] for n in NAMES}
        shapes = [self.params[f"layers.{i}.weight"].shape for i in range(3)]
        if shapes[0][0] != shapes[1][1] or shapes[1][0] != shapes[2][1]:
            raise ValueError(f"ManualMLP weight shapes do not chain: {shapes}")

    @classmethod
    def init(
        cls, sizes: tuple[int, int, int, int], *, rng: np.random.Generator, dtype: Any = np.float32
    ) -> ManualMLP:
        """PyTorch's Linear init: W, b ~ U(−1/√fan_in, 1/√fan_in), drawn in nn.MLP's order."""
        if len(sizes) != 4:
            raise ValueError(f"ManualMLP has three layers: sizes must have 4 entries, got {sizes}")
        params = {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            bound = 1.0 / np.sqrt(n_in)
            params[f"layers.{i}.weight"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype)
            params[f"layers.{i}.bias"] = rng.uniform(-bound, bound, n_out).astype(dtype)
        return cls(params)

    @property
    def sizes(self) -> tuple[int, ...]:
        w = [self.params[f"layers.{i}.weight"] for i in range(3)]
        return (w[0].shape[1], w[0].shape[0], w[1].shape[0], w[2].shape[0])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
        """Logits (N, C) and the cache for :meth:`backward`."""
        p = self.params
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"ManualMLP expects input (N, {self.sizes[0]}), got {x.shape}")
        z1 = x @ p["layers.0.weight"].T + p["layers.0.bias"]  # (N, h)
        a1 = np.maximum(z1, 0)
        z2 = a1 @ p["layers.1.weight"].T + p["layers.1.bias"]  # (N, h)
        a2 = np.maximum(z2, 0)
        z3 = a2 @ p["layers.2.weight"].T + p["layers.2.bias"]  # (N, C)
        e = np.exp(z3 - z3.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        return z3, ForwardCache(x, z1, a1, z2, a2, probs)

    @staticmethod
    def loss(logits: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy, via the stable log-sum-exp."""
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        return float(np.mean(lse - logits[np.arange(len(y)), y]))

    def backward(self, cache: ForwardCache, y: np.ndarray) -> dict[str, np.ndarray]:
        """∂L/∂θ for every parameter, following the derivation in the module docstring."""
        p = self.params
        n = len(y)
        delta3 = cache.p.copy()  # (N, C)
        delta3[np.arange(n), y] -= 1.0
        delta3 /= n  # δ3 = (p − Y)/N
        grads = {
            "layers.2.weight": delta3.T @ cache.a2,  # (C, h) = δ3ᵀ a2
            "layers.2.bias": delta3.sum(axis=0),  # (C,)
        }
        delta2 = (delta3 @ p["layers.2.weight"]) * (cache.z2 > 0)  # (N, h) = δ3 W3 ⊙ [z2>0]
        grads["layers.1.weight"] = delta2.T @ cache.a1  # (h, h)
        grads["layers.1.bias"] = delta2.sum(axis=0)
        delta1 = (delta2 @ p["layers.1.weight"]) * (cache.z1 > 0)  # (N, h)
        grads["layers.0.weight"] = delta1.T @ cache.x  # (h, D)
        grads["layers.0.bias"] = delta1.sum(axis=0)
        return {name: grads[name] for name in NAMES}

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        logits, cache = self.forward(x)
        return self.loss(logits, y), self.backward(cache, y)

    def predict(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Class predictions (N,), in batches."""
        out = [
            self.forward(x[i : i + batch_size])[0].argmax(axis=1)
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out)
