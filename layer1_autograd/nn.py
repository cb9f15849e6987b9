"""Neural-network building blocks on the tensor engine: Module, Linear, MLP and SGD.

A :class:`Module` is a function with state. Its parameters are found by walking its attributes:
a Tensor with ``requires_grad`` is a parameter, a Module is searched recursively, and a
list/tuple of Modules is searched element by element, naming them ``layers.0``, ``layers.1``...
That walk gives ``parameters()``, dotted ``named_parameters()`` and ``state_dict()``.

Initialisation follows PyTorch so weights port across directly: ``Linear(in, out)`` draws
W (out, in) and b (out,) from U(−1/√in, 1/√in). For the forward pass y = x Wᵀ + b.

Stochastic gradient descent with momentum μ and weight decay λ (PyTorch's convention):

    g ← ∇L(θ) + λθ        v ← μ v + g        θ ← θ − η v
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from layer1_autograd import functional as F
from layer1_autograd.tensor import Tensor, no_grad

__all__ = ["Module", "Linear", "MLP", "SGD", "ACTIVATIONS"]

# The one registry of activation names (name -> function on a Tensor). The scalar engine's
# ValueMLP takes a subset of these names; layer 3's torch activations use the same keys.
ACTIVATIONS = {
    "relu": F.relu,
    "tanh": F.tanh,
    "sigmoid": F.sigmoid,
    "gelu": F.gelu,
    "identity": F.identity,
}


class Module:
    """Base class: subclasses set parameters/sub-modules as attributes and define ``forward``."""

    training: bool = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _children(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of attributes that are parameters, modules or lists of modules."""
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                if value.requires_grad:
                    yield name, value
            elif isinstance(value, Module):
                yield name, value
            elif isinstance(value, list | tuple) and any(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    if isinstance(v, Module):
                        yield f"{name}.{i}", v

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, parameter) pairs; a tensor shared by two attributes appears once."""
        seen: set[int] = set()
        for name, p in self._named_parameters_all(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters_all(self, prefix: str) -> Iterator[tuple[str, Tensor]]:
        for name, value in self._children():
            full = f"{prefix}{name}"
            if isinstance(value, Tensor):
                yield full, value
            else:
                yield from value._named_parameters_all(f"{full}.")

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        yield self
        for _, value in self._children():
            if isinstance(value, Module):
                yield from value.modules()

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the parameters (same names, shapes; cast to each parameter's dtype)."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in params.items():
            arr = np.asarray(state[name])
            if arr.shape != p.shape:
                raise ValueError(
                    f"load_state_dict: '{name}' has shape {arr.shape}, the parameter {p.shape}"
                )
            p.data[...] = arr


class Linear(Module):
    """Affine map y = x Wᵀ + b with W (out, in) and b (out,), PyTorch's layout and init."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: Any = np.float32,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"Linear needs positive sizes, got in={in_features}, out={out_features}"
            )
        bound = 1.0 / np.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Tensor(
            rng.uniform(-bound, bound, (out_features, in_features)), requires_grad=True, dtype=dtype
        )
        self.bias = (
            Tensor(rng.uniform(-bound, bound, out_features), requires_grad=True, dtype=dtype)
            if bias
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class MLP(Module):
    """Linear layers with an activation between them (none after the last).

    ``MLP([784, 256, 10], activation="relu", rng=rng)``; ``.layers`` is the list of Linear.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        *,
        rng: np.random.Generator,
        dtype: Any = np.float32,
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"MLP activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.activation = activation
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = [Linear(i, o, rng=rng, dtype=dtype) for i, o in pairs]

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


class SGD:
    """Stochastic gradient descent with optional momentum and weight decay (torch semantics)."""

    def __init__(
        self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got an empty parameter list")
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD needs lr > 0, momentum >= 0, weight_decay >= 0; got lr={lr}, "
                f"momentum={momentum}, weight_decay={weight_decay}"
            )
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        with no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                g = p.grad
                if self.weight_decay:
                    g = g + self.weight_decay * p.data
                if self.momentum:
                    buf = self.buffers[i]
                    if buf is None:
                        buf = self.buffers[i] = np.array(g, dtype=p.dtype)
                    else:
                        buf *= self.momentum
                        buf += g
                    g = buf
                p.data -= self.lr * g
