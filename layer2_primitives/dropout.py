"""Dropout (Srivastava et al., 2014): randomly zero activations while training.

Training, with drop probability p and a fresh Bernoulli mask m (P[m = 1] = 1 - p) per call:

    y = x * m / (1 - p)          dL/dx = dL/dy * m / (1 - p)

The 1/(1 - p) ("inverted dropout") keeps E[y] = x, so evaluation is the identity: y = x.
p = 1 drops everything (y = 0). The mask comes from the layer's own np.random.Generator, so a
seeded run is reproducible (it cannot reproduce torch's random stream; tests compare to torch
given the same mask).
"""

from __future__ import annotations

import numpy as np

from layer1_autograd import Module, Tensor
from layer2_primitives._util import check_tensor


def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator) -> Tensor:
    """Inverted dropout with drop probability p; identity unless `training`."""
    check_tensor(x, "dropout input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        scaled_mask = np.zeros(x.shape, dtype=x.dtype)
    else:
        scaled_mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return Tensor.from_op(x.data * scaled_mask, [x], lambda g: [g * scaled_mask], name="dropout")


class Dropout(Module):
    """Dropout layer, as `torch.nn.Dropout(p)`; `rng` seeds the masks. (*) -> (*)."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.rng)
