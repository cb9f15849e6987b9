"""Elementwise activations as Modules (no parameters): ReLU, GELU, SiLU, Tanh, Sigmoid.

    ReLU(x)  = max(x, 0)                               ReLU'  = [x > 0]
    GELU(x)  = x Phi(x) = x/2 (1 + erf(x / sqrt 2))    GELU'  = Phi(x) + x phi(x)
    GELU_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (torch approximate="tanh")
    SiLU(x)  = x sigma(x)                              SiLU'  = sigma(x) (1 + x (1 - sigma(x)))
    Tanh(x)  = tanh x                                  Tanh'  = 1 - tanh^2 x
    Sigmoid(x) = 1 / (1 + e^{-x})                      sigma' = sigma (1 - sigma)

ReLU, GELU, tanh and sigmoid are layer 1's fused ops; SiLU is fused here (one op, the derivative
written from the saved sigma). Shapes are unchanged: (*) -> (*).
"""

from __future__ import annotations

from scipy.special import expit

from layer1_autograd import Module, Tensor
from layer2_primitives._util import check_tensor


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x), as `torch.nn.functional.silu`."""
    check_tensor(x, "silu input")
    s = expit(x.data)
    return Tensor.from_op(x.data * s, [x], lambda g: [g * s * (1 + x.data * (1 - s))], name="silu")


class ReLU(Module):
    """max(x, 0), as `torch.nn.ReLU`."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class GELU(Module):
    """x Phi(x) (approximate="none") or its tanh form (approximate="tanh"), as `torch.nn.GELU`."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return x.gelu(self.approximate)


class SiLU(Module):
    """x sigma(x) (a.k.a. swish), as `torch.nn.SiLU`."""

    def forward(self, x: Tensor) -> Tensor:
        return silu(x)


class Tanh(Module):
    """tanh(x), as `torch.nn.Tanh`."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    """1 / (1 + exp(-x)), as `torch.nn.Sigmoid`."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()
