"""A second scalar autograd engine, written differently on purpose: the proof of mastery mode.

Layer 1's reference stores one module-level backward function per op and orders the graph by
an iterative depth-first search. This one is built the other way round, so that passing the
same tests shows they check behaviour, not a particular implementation:

- each operation returns a node carrying a *closure* ``_push(g)`` over its inputs that knows
  its local derivatives; it is handed the node's gradient g rather than closing over the node,
  so no node is part of a reference cycle and a dropped graph is freed at once; a table
  ``_UNARY`` builds the unary functions from (f, f') pairs;
- the graph is ordered by Kahn's algorithm: count each node's consumers, then release a node
  once all of them have pushed their gradient (no recursion, so a 100 000-node chain is fine);
- the internal names differ (``_parents``, ``_push``, ``_tag``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

__all__ = ["Value"]


def _as_float(x: Any, op: str) -> float:
    if type(x) is float:
        return x
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"Value {op}: needs a real number, got {type(x).__name__}")
    return float(x)


def _stable_sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _leaf(g: float) -> None:
    """A leaf (an input or a parameter) has nothing below it to push to."""


# name -> (f(x), f'(x) given x and f(x))
_UNARY: dict[str, tuple[Callable[[float], float], Callable[[float, float], float]]] = {
    "exp": (math.exp, lambda x, y: y),
    "tanh": (math.tanh, lambda x, y: 1.0 - y * y),
    "sigmoid": (_stable_sigmoid, lambda x, y: y * (1.0 - y)),
    "relu": (lambda x: max(x, 0.0), lambda x, y: 1.0 if x > 0 else 0.0),
}


class Value:
    def __init__(self, data: float, label: str = "", _parents: tuple = (), _tag: str = "") -> None:
        self.data = _as_float(data, "constructor")
        self.grad = 0.0
        self.label = label
        self._parents: tuple[Value, ...] = _parents
        self._tag = _tag
        self._push: Callable[[float], None] = _leaf

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"

    @staticmethod
    def _lift(x: Any, op: str) -> Value:
        return x if isinstance(x, Value) else Value(_as_float(x, op))

    def __add__(self, other: Any) -> Value:
        other = Value._lift(other, "+")
        out = Value(self.data + other.data, _parents=(self, other), _tag="+")

        def push(g: float) -> None:
            self.grad += g
            other.grad += g

        out._push = push
        return out

    def __mul__(self, other: Any) -> Value:
        other = Value._lift(other, "*")
        out = Value(self.data * other.data, _parents=(self, other), _tag="*")

        def push(g: float) -> None:
            self.grad += other.data * g
            other.grad += self.data * g

        out._push = push
        return out

    def __pow__(self, k: Any) -> Value:
        if isinstance(k, Value):
            return (k * self.log()).exp()
        k = _as_float(k, "**")
        if self.data < 0 and not k.is_integer():
            raise ValueError(f"Value ** {k}: negative base {self.data} with a fractional power")
        out = Value(self.data**k, _parents=(self,), _tag="**")

        def push(g: float) -> None:
            if k != 0:
                self.grad += k * self.data ** (k - 1) * g

        out._push = push
        return out

    def __neg__(self) -> Value:
        return self * -1

    def __sub__(self, other: Any) -> Value:
        return self + (-Value._lift(other, "-"))

    def __truediv__(self, other: Any) -> Value:
        other = Value._lift(other, "/")
        if other.data == 0:
            raise ZeroDivisionError(f"Value {self.data} / 0")
        return self * other**-1

    def __radd__(self, other: Any) -> Value:
        return self + other

    def __rmul__(self, other: Any) -> Value:
        return self * other

    def __rsub__(self, other: Any) -> Value:
        return Value._lift(other, "-") - self

    def __rtruediv__(self, other: Any) -> Value:
        return Value._lift(other, "/") / self

    def __rpow__(self, base: Any) -> Value:
        return Value._lift(base, "**") ** self

    def _unary(self, name: str) -> Value:
        f, df = _UNARY[name]
        y = f(self.data)
        out = Value(y, _parents=(self,), _tag=name)

        def push(g: float) -> None:
            self.grad += df(self.data, y) * g

        out._push = push
        return out

    def exp(self) -> Value:
        return self._unary("exp")

    def tanh(self) -> Value:
        return self._unary("tanh")

    def sigmoid(self) -> Value:
        return self._unary("sigmoid")

    def relu(self) -> Value:
        return self._unary("relu")

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"log of a non-positive number: {self.data} (needs positive)")
        out = Value(math.log(self.data), _parents=(self,), _tag="log")

        def push(g: float) -> None:
            self.grad += g / self.data

        out._push = push
        return out

    def backward(self) -> None:
        consumers: dict[int, int] = {}
        seen = {id(self)}
        frontier = [self]
        while frontier:  # count, for every node, how many nodes use it
            node = frontier.pop()
            for p in node._parents:
                consumers[id(p)] = consumers.get(id(p), 0) + 1
                if id(p) not in seen:
                    seen.add(id(p))
                    frontier.append(p)
        ready = [self]
        order = []
        while ready:  # Kahn: a node is released when all its consumers are done
            node = ready.pop()
            order.append(node)
            for p in node._parents:
                consumers[id(p)] -= 1
                if consumers[id(p)] == 0:
                    ready.append(p)
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0
        for node in order:
            node._push(node.grad)
