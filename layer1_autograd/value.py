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

Implementation note: each node stores a plain module-level function ``_backward(node)`` rather
than a closure over itself (micrograd's style). A closure would make every node part of a
reference cycle (node → closure → node), so graphs could only be freed by Python's cyclic
garbage collector, whose repeated scans of hundreds of thousands of live nodes made training
several times slower. Without cycles, reference counting frees a graph the moment it is dropped.

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
    if type(x) is float or type(x) is int:
        return float(x)
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"Value {op}: expected a real number or Value, got {type(x).__name__}")
    return float(x)


# Local derivatives, one function per operation: add ∂out/∂child · out.grad to each child.
def _add_backward(out: Value) -> None:
    a, b = out._children
    a.grad += out.grad
    b.grad += out.grad


def _sub_backward(out: Value) -> None:
    a, b = out._children
    a.grad += out.grad
    b.grad -= out.grad


def _mul_backward(out: Value) -> None:
    a, b = out._children
    a.grad += b.data * out.grad
    b.grad += a.data * out.grad


def _div_backward(out: Value) -> None:
    a, b = out._children
    a.grad += out.grad / b.data
    b.grad -= out.grad * out.data / b.data  # ∂(a/b)/∂b = −a/b² = −out/b


def _pow_backward(out: Value) -> None:
    (a,) = out._children
    k = out._aux
    if k != 0:
        a.grad += k * a.data ** (k - 1) * out.grad


def _exp_backward(out: Value) -> None:
    out._children[0].grad += out.data * out.grad


def _log_backward(out: Value) -> None:
    a = out._children[0]
    a.grad += out.grad / a.data


def _tanh_backward(out: Value) -> None:
    out._children[0].grad += (1.0 - out.data * out.data) * out.grad


def _sigmoid_backward(out: Value) -> None:
    s = out.data
    out._children[0].grad += s * (1.0 - s) * out.grad


def _relu_backward(out: Value) -> None:
    if out.data > 0:
        out._children[0].grad += out.grad


class Value:
    """A scalar node in an expression graph, with its gradient."""

    __slots__ = ("data", "grad", "_children", "_backward", "_aux", "_op", "label")

    def __init__(self, data: float, label: str = "") -> None:
        self.data = data if type(data) is float else _check_real(data, "constructor")
        self.grad = 0.0
        self._children: tuple[Value, ...] = ()
        self._backward: Callable[[Value], None] | None = None
        self._aux = 0.0
        self._op = ""
        self.label = label

    @classmethod
    def _node(
        cls,
        data: float,
        children: tuple[Value, ...],
        op: str,
        backward: Callable[[Value], None],
        aux: float = 0.0,
    ) -> Value:
        """The result of an operation (skips the constructor's checks: data is a float)."""
        out = cls.__new__(cls)
        out.data = data
        out.grad = 0.0
        out._children = children
        out._backward = backward
        out._aux = aux
        out._op = op
        out.label = ""
        return out

    def __repr__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return f"Value({name}data={self.data:.6g}, grad={self.grad:.6g})"

    @staticmethod
    def _wrap(x: Any, op: str) -> Value:
        return x if isinstance(x, Value) else Value(_check_real(x, op))

    # -------------------------------------------------------------------- binary operations
    def __add__(self, other: Any) -> Value:
        other = self._wrap(other, "+")
        return Value._node(self.data + other.data, (self, other), "+", _add_backward)

    def __sub__(self, other: Any) -> Value:
        other = self._wrap(other, "-")
        return Value._node(self.data - other.data, (self, other), "-", _sub_backward)

    def __mul__(self, other: Any) -> Value:
        other = self._wrap(other, "*")
        return Value._node(self.data * other.data, (self, other), "*", _mul_backward)

    def __truediv__(self, other: Any) -> Value:
        other = self._wrap(other, "/")
        if other.data == 0.0:
            raise ZeroDivisionError(f"Value division by zero: {self.data} / 0")
        return Value._node(self.data / other.data, (self, other), "/", _div_backward)

    def __pow__(self, exponent: Any) -> Value:
        if isinstance(exponent, Value):
            # a^b = exp(b log a): differentiable in both base (a > 0) and exponent.
            return (exponent * self.log()).exp()
        k = _check_real(exponent, "**")
        if self.data < 0 and not k.is_integer():
            raise ValueError(f"Value ** {k}: a negative base {self.data} needs an integer power")
        return Value._node(self.data**k, (self,), f"**{k:g}", _pow_backward, aux=k)

    def __neg__(self) -> Value:
        return self * -1.0

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
        return Value._node(math.exp(self.data), (self,), "exp", _exp_backward)

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"Value.log needs a positive number, got {self.data}")
        return Value._node(math.log(self.data), (self,), "log", _log_backward)

    def tanh(self) -> Value:
        return Value._node(math.tanh(self.data), (self,), "tanh", _tanh_backward)

    def sigmoid(self) -> Value:
        x = self.data
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:  # same value, but e^{-x} would overflow and 1 - ... would lose the tail
            e = math.exp(x)
            s = e / (1.0 + e)
        return Value._node(s, (self,), "sigmoid", _sigmoid_backward)

    def relu(self) -> Value:
        x = self.data
        return Value._node(x if x > 0 else 0.0, (self,), "relu", _relu_backward)

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
        """Accumulate ∂self/∂v into ``v.grad`` for every node v of the graph.

        Leaves (inputs, parameters) add up their gradients across calls, as in PyTorch: zero
        them between steps. Intermediate nodes start from zero on every call, or a second
        ``backward`` would push their stale gradient from the first one down again.
        """
        order = self.topological_order()
        for node in order:
            if node._backward is not None:
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):
            if node._backward is not None:
                node._backward(node)
