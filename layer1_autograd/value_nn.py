"""Neurons, layers and an MLP built from scalar :class:`Value` nodes (micrograd-style).

A neuron with weights w, bias b and nonlinearity φ computes

    y = φ( ∑_i w_i x_i + b )

and every multiply and add in that sum is a node of the expression graph, so one forward pass
of a 2-16-16-1 network on one point builds ~900 nodes and ``loss.backward()`` differentiates
all of them. Slow, but nothing is hidden: this is exactly the computation a tensor engine
batches into matrix products.

Initialisation: w, b ~ U(−1/√fan_in, 1/√fan_in), as in PyTorch's Linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layer1_autograd.nn import ACTIVATIONS
from layer1_autograd.value import Value

__all__ = ["ValueNeuron", "ValueLayer", "ValueMLP", "hinge_loss", "VALUE_ACTIVATIONS"]

# The names of nn.ACTIVATIONS that a scalar Value implements (every one but gelu).
VALUE_ACTIVATIONS = tuple(n for n in ACTIVATIONS if n == "identity" or hasattr(Value, n))


class ValueNeuron:
    """One unit: φ(w·x + b)."""

    def __init__(self, n_in: int, nonlin: str, rng: np.random.Generator) -> None:
        if nonlin not in VALUE_ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {VALUE_ACTIVATIONS}, got {nonlin!r}")
        bound = 1.0 / np.sqrt(n_in)
        self.w = [Value(float(v)) for v in rng.uniform(-bound, bound, n_in)]
        self.b = Value(float(rng.uniform(-bound, bound)))
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Value | float]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"neuron expects {len(self.w)} inputs, got {len(x)}")
        act = self.b
        for wi, xi in zip(self.w, x, strict=True):
            act = act + wi * xi
        if self.nonlin == "identity":
            return act
        return getattr(act, self.nonlin)()

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]


class ValueLayer:
    """``n_out`` neurons reading the same inputs."""

    def __init__(self, n_in: int, n_out: int, nonlin: str, rng: np.random.Generator) -> None:
        self.neurons = [ValueNeuron(n_in, nonlin, rng) for _ in range(n_out)]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class ValueMLP:
    """Layers of neurons; the last layer has no activation (its outputs are scores/logits)."""

    def __init__(
        self, sizes: Sequence[int], activation: str = "relu", *, rng: np.random.Generator
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"ValueMLP needs an input and an output size, got {list(sizes)}")
        if activation not in VALUE_ACTIVATIONS:
            raise ValueError(f"activation must be one of {VALUE_ACTIVATIONS}, got {activation!r}")
        last = len(sizes) - 2
        self.layers = [
            ValueLayer(sizes[i], sizes[i + 1], "identity" if i == last else activation, rng)
            for i in range(len(sizes) - 1)
        ]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        out: Sequence[Value | float] = x
        for layer in self.layers:
            out = layer(out)
        return list(out)

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


def hinge_loss(scores: Sequence[Value], labels: Sequence[int]) -> Value:
    """Mean max-margin loss  (1/N) ∑ relu(1 − y_n s_n)  for labels y ∈ {−1, +1}."""
    if len(scores) != len(labels) or not scores:
        raise ValueError(f"hinge_loss: {len(scores)} scores for {len(labels)} labels")
    total = Value(0.0)
    for s, y in zip(scores, labels, strict=True):
        if y not in (-1, 1):
            raise ValueError(f"hinge_loss: labels must be -1 or +1, got {y}")
        total = total + (1.0 - y * s).relu()
    return total / len(scores)
