"""A scalar reverse-mode autograd engine: the whole idea of backpropagation on one number at a time.

Each :class:`Value` holds a float ``data``, the gradient ``grad`` = ∂L/∂(this value) filled in by
``backward()``, the Values it was computed from (its children in the expression graph) and the
name of the operation. Every operation knows its *local* derivatives: for c = a·b,
∂c/∂a = b and ∂c/∂b = a. The chain rule combines them:

    ∂L/∂a  +=  ∂L/∂c · ∂c/∂a

``L.backward()`` sets ∂L/∂L = 1 and visits the nodes in *reverse topological order*, so that a
node's gradient is complete (every use of it has contributed) before it is pushed to its
children. The ``+=`` is essential: a value used twice (``a * a``, or a weight shared by many
neurons) receives the sum of the gradients of its uses, which is the multivariate chain rule.
The topological order comes from an iterative depth-first search (an explicit stack instead of
recursion), so a chain of a hundred thousand operations does not overflow Python's stack.

The local derivatives:

    a + b: 1, 1          a · b: b, a          a / b: 1/b, −a/b²       aᵏ: k aᵏ⁻¹
    exp a: exp a         log a: 1/a           tanh a: 1 − tanh² a
    σ(a) = 1/(1 + e⁻ᵃ): σ(a)(1 − σ(a))        relu a: [a > 0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

__all__ = ["Value"]


def _check_real(x: Any, op: str) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"Value {op}: expected a real number or Value, got {type(x).__name__}")
    return float(x)


class Value:
    """A scalar node in an expression graph, with its gradient."""

    __slots__ = ("data", "grad", "_children", "_backward", "_op", "label")

    def __init__(
        self, data: float, _children: tuple[Value, ...] = (), _op: str = "", label: str = ""
    ) -> None:
        self.data = data if type(data) is float else _check_real(data, "constructor")
        self.grad = 0.0
        self._children = _children
        self._backward: Callable[[], None] | None = None
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return f"Value({name}data={self.data:.6g}, grad={self.grad:.6g})"

    @staticmethod
    def _wrap(x: Any, op: str) -> Value:
        return x if isinstance(x, Value) else Value(_check_real(x, op))

    # -------------------------------------------------------------------- binary operations
    def __add__(self, other: Any) -> Value:
        other = self._wrap(other, "+")
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Any) -> Value:
        other = self._wrap(other, "*")
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __truediv__(self, other: Any) -> Value:
        other = self._wrap(other, "/")
        if other.data == 0.0:
            raise ZeroDivisionError(f"Value division by zero: {self.data} / 0")
        out = Value(self.data / other.data, (self, other), "/")

        def _backward() -> None:
            self.grad += out.grad / other.data
            other.grad -= out.grad * out.data / other.data

        out._backward = _backward
        return out

    def __pow__(self, exponent: Any) -> Value:
        if isinstance(exponent, Value):
            # a^b = exp(b log a): differentiable in both base (a > 0) and exponent.
            return (exponent * self.log()).exp()
        k = _check_real(exponent, "**")
        if self.data < 0 and not k.is_integer():
            raise ValueError(f"Value ** {k}: a negative base {self.data} needs an integer power")
        out = Value(self.data**k, (self,), f"**{k:g}")

        def _backward() -> None:
            self.grad += k * self.data ** (k - 1) * out.grad if k != 0 else 0.0

        out._backward = _backward
        return out

    def __neg__(self) -> Value:
        return self * -1.0

    def __sub__(self, other: Any) -> Value:
        other = self._wrap(other, "-")
        out = Value(self.data - other.data, (self, other), "-")

        def _backward() -> None:
            self.grad += out.grad
            other.grad -= out.grad

        out._backward = _backward
        return out

    def __radd__(self, other: Any) -> Value:
        return self + other

    def __rmul__(self, other: Any) -> Value:
        return self * other

    def __rsub__(self, other: Any) -> Value:
        return self._wrap(other, "-") - self

    def __rtruediv__(self, other: Any) -> Value:
        return self._wrap(other, "/") / self

    def __rpow__(self, base: Any) -> Value:
        return self._wrap(base, "**") ** self

    # --------------------------------------------------------------------- unary functions
    def exp(self) -> Value:
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"Value.log needs a positive number, got {self.data}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += out.grad / self.data

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - t * t) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        x = self.data
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:  # same value, but e^{-x} would overflow and 1 - ... would lose the tail
            e = math.exp(x)
            s = e / (1.0 + e)
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:
            self.grad += s * (1.0 - s) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        x = self.data
        out = Value(x if x > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            if x > 0:
                self.grad += out.grad

        out._backward = _backward
        return out

    # -------------------------------------------------------------------------- backward
    def topological_order(self) -> list[Value]:
        """Every node reachable from self, each after its children (iterative DFS)."""
        order: list[Value] = []
        visited: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for child in node._children:
                if id(child) not in visited:
                    stack.append((child, False))
        return order

    def backward(self) -> None:
        """Accumulate ∂self/∂v into ``v.grad`` for every node v of the graph."""
        order = self.topological_order()
        self.grad = 1.0
        for node in reversed(order):
            if node._backward is not None:
                node._backward()
