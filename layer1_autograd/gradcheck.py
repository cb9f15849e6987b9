"""Two independent routes to one gradient: the hand-derived backward pass against the engine.

:class:`~layer1_autograd.manual_mlp.ManualMLP` computes ∂L/∂θ from formulas written out by hand;
the tensor engine's :class:`~layer1_autograd.nn.MLP` (same parameter names, same weights) gets
it by reverse-mode automatic differentiation. Both in float64, the largest difference

    max_θ |∂L/∂θ (manual) − ∂L/∂θ (engine)|

is rounding (≈ 1e-16 relative) when both are right, and of the size of the gradient itself when
a formula is wrong: the check a trained manual MLP reports beside its accuracy.
"""

from __future__ import annotations

import numpy as np

from layer1_autograd import functional as F
from layer1_autograd.manual_mlp import ManualMLP
from layer1_autograd.nn import MLP
from layer1_autograd.tensor import Tensor

__all__ = ["grad_difference"]


def grad_difference(model: ManualMLP, x: np.ndarray, y: np.ndarray) -> float:
    """max |manual − tensor engine| over all parameter gradients at (x, y), in float64."""
    manual = ManualMLP({n: a.astype(np.float64) for n, a in model.params.items()})
    _, grads = manual.loss_and_grads(x.astype(np.float64), y)
    engine = MLP(manual.sizes, rng=np.random.default_rng(0), dtype=np.float64)
    engine.load_state_dict(manual.params)
    F.cross_entropy(engine(Tensor(x.astype(np.float64))), y).backward()
    return max(float(np.abs(p.grad - grads[n]).max()) for n, p in engine.named_parameters())
