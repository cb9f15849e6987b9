"""A reverse-mode automatic-differentiation engine over numpy arrays.

Every operation on a :class:`Tensor` that requires a gradient records a node in a directed
acyclic graph: the output array, the parent tensors it was computed from, and a closure that
maps the gradient of the loss with respect to the output (``grad_out``, the *adjoint* of the
output) to the gradients with respect to each parent. This is the vector-Jacobian product

    x̄_i = ∑_j  ȳ_j · ∂y_j/∂x_i          (written  x̄ = J^T ȳ)

and the chain rule says the adjoint of any node is the sum of the vector-Jacobian products of
every use of that node. ``loss.backward()`` therefore

1. orders the graph topologically (every node after the nodes it was computed from) with an
   *iterative* depth-first search, so a chain of 100,000 nodes needs no Python recursion;
2. walks that order in reverse, starting from ``ȳ = 1`` at the loss, calling each node's closure
   once its adjoint is complete, and *summing* the contributions that arrive at a node used more
   than once (a shared sub-expression, a weight used in every time step);
3. stores the finished adjoint of every leaf tensor (a parameter or input created with
   ``requires_grad=True``) in ``leaf.grad``, adding to what is there (gradients accumulate across
   ``backward`` calls until zeroed, as in PyTorch). Intermediate adjoints are dropped as soon as
   they have been propagated.

Broadcasting. ``a + b`` with ``a`` of shape (3, 1) and ``b`` of shape (4,) produces (3, 4): ``a``
is implicitly copied along axis 1 and ``b`` along a new leading axis. The adjoint of a copy is
the sum of the adjoints of its copies, so the backward pass *un-broadcasts*: it sums the
incoming gradient over the leading axes that broadcasting added and over the axes where the
operand had size 1 (:func:`unbroadcast`).

Custom operations. :meth:`Tensor.from_op` turns any numpy computation into a graph node given
its backward closure; the built-in ops below are written with it, and layer 2 uses it for fused
primitives (convolution, attention) whose hand-written backward is faster than a composition.

Speed. An op only computes the gradients of parents that require one, forward passes under
``no_grad()`` record nothing, arrays are never copied without need, and the topological order is
cached on the root so a repeated ``backward`` on the same graph does not search again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from numbers import Number
from typing import Any

import numpy as np
from scipy.special import erf, expit

__all__ = [
    "Tensor",
    "no_grad",
    "is_grad_enabled",
    "concatenate",
    "stack",
    "unbroadcast",
]

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_GRAD_ENABLED = True

Axis = int | tuple[int, ...] | None
BackwardFn = Callable[[np.ndarray], Sequence[np.ndarray | None]]


def is_grad_enabled() -> bool:
    """True unless inside a ``no_grad()`` block."""
    return _GRAD_ENABLED


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager (and decorator) in which operations record no graph.

    Inside it every op returns a constant tensor (``requires_grad=False``): use it for
    evaluation, parameter updates and anything else that should not be differentiated.
    """
    global _GRAD_ENABLED
    previous = _GRAD_ENABLED
    _GRAD_ENABLED = False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def _as_float_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert ``data`` to a float16/32/64 ndarray, without copying a float array."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return _as_dtype(data, np.dtype(dtype))
    if isinstance(data, np.ndarray):
        if data.dtype in _FLOAT_DTYPES:
            return data
        if data.dtype.kind in "biu":
            return data.astype(np.float64)
        raise TypeError(
            f"Tensor data must be a float16/32/64 (or integer/bool) array, got dtype {data.dtype}"
        )
    if isinstance(data, bool | Number) and not isinstance(data, complex):
        return np.asarray(data, dtype=np.float64)
    if isinstance(data, list | tuple):
        try:
            arr = np.asarray(data)
        except ValueError as exc:
            raise TypeError(f"Tensor data must be a rectangular numeric list: {exc}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Tensor data must be numeric, got a list of {arr.dtype} values")
        return arr.astype(np.float64, copy=False)
    raise TypeError(f"Tensor data must be a number, list or numpy array, got {type(data).__name__}")


def _as_dtype(data: Any, dt: np.dtype) -> np.ndarray:
    """``data`` as an array of the float dtype ``dt`` (the ``dtype=`` argument of Tensor)."""
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"Tensor dtype must be float16, float32 or float64, got {dt}")
    if isinstance(data, np.ndarray) and data.dtype.kind not in "biuf":
        raise TypeError(f"Tensor data must be numeric, got an array of dtype {data.dtype}")
    try:
        return np.asarray(data, dtype=dt)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Tensor data must be numeric, got {type(data).__name__}: {exc}") from None


def _elementwise(op: str, fn: Callable, a: Tensor, b: Tensor) -> np.ndarray:
    """``fn(a.data, b.data)``; shapes that do not broadcast are named with the op."""
    try:
        return fn(a.data, b.data)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} do not broadcast (aligned from the right, "
            "each pair of sizes must be equal or one of them 1)"
        ) from None


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the adjoint of numpy broadcasting.

    Broadcasting prepends axes and stretches size-1 axes; each copy received its own
    gradient, and the gradient of the original is their sum.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return np.asarray(grad)


def _normalize_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """Axis argument -> sorted tuple of non-negative axes (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis} repeats an axis")
    return tuple(sorted(out))


def _expand_reduced(
    grad: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool
) -> np.ndarray:
    """Broadcast the gradient of a reduction back to the input's shape."""
    if not keepdims and axes:
        grad = np.expand_dims(grad, axes)
    return np.broadcast_to(grad, shape)


class Tensor:
    """An n-dimensional float array that remembers how it was computed.

    ``Tensor(data, requires_grad=False, dtype=None)``: float16/32/64 numpy arrays keep their
    dtype (and are not copied); Python numbers, lists and integer arrays become float64 unless
    ``dtype`` is given. ``.grad`` is None or an ndarray of the tensor's shape and dtype.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op", "_topo")
    # Make numpy defer to Tensor's reflected operators: ndarray + Tensor -> Tensor.__radd__.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _as_float_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward: BackwardFn | None = None
        self._op: str = ""
        self._topo: list[Tensor] | None = None

    # ----------------------------------------------------------------- graph construction
    @classmethod
    def from_op(
        cls, out_data: np.ndarray, parents: Sequence[Tensor], backward: BackwardFn, name: str = "op"
    ) -> Tensor:
        """Wrap ``out_data`` as the output of a differentiable operation.

        ``backward(grad_out)`` must return one entry per parent: the gradient of the loss with
        respect to that parent (an array of the parent's shape) or None. It may skip the work
        for parents with ``requires_grad=False``. ``grad_out`` may be a read-only view: never
        modify it in place. With grad disabled, or no parent requiring grad, the result is a
        constant tensor and no graph is recorded.
        """
        out = cls.__new__(cls)
        out.data = out_data if isinstance(out_data, np.ndarray) else np.asarray(out_data)
        out.grad = None
        out._topo = None
        out._op = name
        if _GRAD_ENABLED and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._backward = backward
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
        return out

    def _coerce(self, other: Any, op: str) -> Tensor:
        """Make ``other`` a Tensor compatible with ``self`` for a binary op."""
        if isinstance(other, Tensor):
            if other.data.dtype != self.data.dtype:
                raise TypeError(
                    f"{op}: cannot combine a {self.data.dtype} tensor with a {other.data.dtype} "
                    "tensor; convert one with .astype()"
                )
            return other
        if isinstance(other, bool | Number) and not isinstance(other, complex):
            return Tensor(np.asarray(other, dtype=self.data.dtype))
        if isinstance(other, np.ndarray):
            if other.dtype in _FLOAT_DTYPES and other.dtype != self.data.dtype:
                raise TypeError(
                    f"{op}: cannot combine a {self.data.dtype} tensor with a {other.dtype} "
                    "array; convert one with .astype()"
                )
            if other.dtype.kind not in "biuf":
                raise TypeError(f"{op}: operand array has non-numeric dtype {other.dtype}")
            return Tensor(other.astype(self.data.dtype, copy=False))
        raise TypeError(
            f"{op}: unsupported operand type {type(other).__name__} for a Tensor "
            "(expected Tensor, number or numpy array)"
        )

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op}" if self._op else ""
        return f"Tensor({self.data!r}{grad}{op})"

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return float(self.data.reshape(()))

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> Tensor:
        """The same data (shared, not copied) as a constant tensor outside the graph."""
        return Tensor(self.data)

    def astype(self, dtype: Any) -> Tensor:
        """Cast to float16/32/64; the gradient is cast back."""
        dt = np.dtype(dtype)
        if dt not in _FLOAT_DTYPES:
            raise TypeError(f"astype: dtype must be float16, float32 or float64, got {dt}")
        if dt == self.data.dtype:
            return self
        src = self.data.dtype
        return Tensor.from_op(self.data.astype(dt), (self,), lambda g: (g.astype(src),), "astype")

    # --------------------------------------------------------------------------- backward
    def _topological_order(self) -> list[Tensor]:
        """Nodes requiring grad reachable from self, each after its parents (iterative DFS)."""
        if self._topo is not None:
            return [*self._topo, self]
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
        # Cache the ancestors only: a list holding self would make a reference cycle and keep
        # the whole graph (and its activations) alive until the cyclic garbage collector runs.
        self._topo = order[:-1]
        return order

    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf requiring grad.

        ``grad`` is the adjoint of ``self`` (default 1, allowed only for a one-element tensor).
        """
        pending: dict[int, np.ndarray] = {id(self): self._seed(grad)}
        for node in reversed(self._topological_order()):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:
                if node.grad is None:
                    node.grad = np.array(g, dtype=node.data.dtype)  # own copy: never aliased
                else:
                    node.grad += g
                continue
            parent_grads = node._backward(g)
            for parent, pg in zip(node._parents, parent_grads, strict=True):
                if pg is not None and parent.requires_grad:
                    node._check_grad_shape(parent, pg)
                    prev = pending.get(id(parent))
                    pending[id(parent)] = pg if prev is None else prev + pg

    def _seed(self, grad: Any) -> np.ndarray:
        """The adjoint that ``backward(grad)`` starts from, checked against ``self``."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of it was created "
                "with requires_grad=True (or it was computed under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a grad argument needs a scalar (one-element) tensor, "
                    f"got shape {self.shape}; pass grad= of that shape"
                )
            return np.ones_like(self.data)
        seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
        if seed.shape != self.shape:
            raise ValueError(f"backward(grad): grad has shape {seed.shape}, expected {self.shape}")
        return seed

    def _check_grad_shape(self, parent: Tensor, pg: np.ndarray) -> None:
        """A custom op's backward must return each parent's gradient in the parent's shape."""
        if pg.shape != parent.data.shape:
            raise ValueError(
                f"backward of '{self._op}' returned a gradient of shape {pg.shape} for "
                f"a parent of shape {parent.data.shape}"
            )

    # ------------------------------------------------------------------------ arithmetic
    def __add__(self, other: Any) -> Tensor:
        b = self._coerce(other, "add")
        a_shape, b_shape = self.shape, b.shape
        return Tensor.from_op(
            _elementwise("add", np.add, self, b),
            (self, b),
            lambda g: (unbroadcast(g, a_shape), unbroadcast(g, b_shape)),
            "add",
        )

    __radd__ = __add__

    def __sub__(self, other: Any) -> Tensor:
        b = self._coerce(other, "sub")
        a_shape, b_shape = self.shape, b.shape
        return Tensor.from_op(
            _elementwise("sub", np.subtract, self, b),
            (self, b),
            lambda g: (
                unbroadcast(g, a_shape),
                -unbroadcast(g, b_shape) if b.requires_grad else None,
            ),
            "sub",
        )

    def __rsub__(self, other: Any) -> Tensor:
        return self._coerce(other, "sub") - self

    def __neg__(self) -> Tensor:
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __mul__(self, other: Any) -> Tensor:
        b = self._coerce(other, "mul")
        a = self

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            ga = unbroadcast(g * b.data, a.shape) if a.requires_grad else None
            gb = unbroadcast(g * a.data, b.shape) if b.requires_grad else None
            return ga, gb

        return Tensor.from_op(_elementwise("mul", np.multiply, a, b), (a, b), backward, "mul")

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Tensor:
        b = self._coerce(other, "div")
        a = self
        out = _elementwise("div", np.divide, a, b)

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            ga = unbroadcast(g / b.data, a.shape) if a.requires_grad else None
            gb = unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None
            return ga, gb

        return Tensor.from_op(out, (a, b), backward, "div")

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._coerce(other, "div") / self

    def __pow__(self, exponent: Any) -> Tensor:
        a = self
        if isinstance(exponent, Number) and not isinstance(exponent, complex | bool):
            # A numpy scalar would promote float32 to float64 (NEP 50); a Python number adopts.
            p = exponent.item() if isinstance(exponent, np.generic) else exponent
            out = a.data**p
            if p == 0:
                return Tensor.from_op(out, (a,), lambda g: (np.zeros_like(a.data),), "pow")
            return Tensor.from_op(out, (a,), lambda g: (g * (p * a.data ** (p - 1)),), "pow")
        b = self._coerce(exponent, "pow")
        out = _elementwise("pow", np.power, a, b)

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            # torch's conventions where the formulas give 0·inf: ∂/∂a = 0 where b = 0, and
            # ∂/∂b = 0 where a = 0 and b >= 0 (aᵇ is flat there: 0 for b > 0, 1 for b = 0).
            ga = gb = None
            with np.errstate(divide="ignore", invalid="ignore"):
                if a.requires_grad:
                    da = np.where(b.data == 0, 0, b.data * a.data ** (b.data - 1))
                    ga = unbroadcast(g * da.astype(a.dtype, copy=False), a.shape)
                if b.requires_grad:
                    db = np.where((a.data == 0) & (b.data >= 0), 0, out * np.log(a.data))
                    gb = unbroadcast(g * db.astype(b.dtype, copy=False), b.shape)
            return ga, gb

        return Tensor.from_op(out, (a, b), backward, "pow")

    def __rpow__(self, base: Any) -> Tensor:
        return self._coerce(base, "pow") ** self

    def __matmul__(self, other: Any) -> Tensor:
        b = self._coerce(other, "matmul")
        a = self
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul needs tensors with at least one dimension, got shapes {a.shape} "
                f"and {b.shape}"
            )
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape} (inner dimensions {k_a} and "
                f"{k_b} differ)"
            )
        try:
            out = a.data @ b.data
        except ValueError as exc:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape} (batch dimensions do not "
                f"broadcast: {exc})"
            ) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            # Promote 1-D operands to matrices as numpy does: a (k,) -> (1, k), b (k,) -> (k, 1).
            a2 = a.data[None, :] if a.ndim == 1 else a.data
            b2 = b.data[:, None] if b.ndim == 1 else b.data
            batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
            g2 = g.reshape(*batch, a2.shape[-2], b2.shape[-1])
            ga = gb = None
            if a.requires_grad:
                ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
            if b.requires_grad:
                gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
            return ga, gb

        return Tensor.from_op(out, (a, b), backward, "matmul")

    def __rmatmul__(self, other: Any) -> Tensor:
        return self._coerce(other, "matmul") @ self

    # ------------------------------------------------------------------------ reductions
    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        shape = self.shape
        axes = _normalize_axes(axis, self.ndim)
        return Tensor.from_op(
            np.asarray(self.data.sum(axis=axes, keepdims=keepdims)),
            (self,),
            lambda g: (_expand_reduced(g, shape, axes, keepdims),),
            "sum",
        )

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        shape = self.shape
        axes = _normalize_axes(axis, self.ndim)
        count = int(np.prod([shape[i] for i in axes])) if axes else 1
        scale = 1.0 / count

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            return (_expand_reduced(g * scale, shape, axes, keepdims),)

        return Tensor.from_op(
            np.asarray(self.data.mean(axis=axes, keepdims=keepdims)), (self,), backward, "mean"
        )

    def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        """Maximum over ``axis``; ties share the gradient equally (like ``torch.amax``)."""
        if self.size == 0:
            raise ValueError(f"max of an empty tensor of shape {self.shape}")
        shape = self.shape
        axes = _normalize_axes(axis, self.ndim)
        out_keep = self.data.max(axis=axes, keepdims=True)
        out = (
            out_keep
            if keepdims
            else np.asarray(out_keep.reshape([n for i, n in enumerate(shape) if i not in axes]))
        )

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            mask = self.data == out_keep
            count = mask.sum(axis=axes, keepdims=True)
            g_keep = g if keepdims or not axes else np.expand_dims(g, axes)
            return (mask * (g_keep / count),)

        return Tensor.from_op(out, (self,), backward, "max")

    # ---------------------------------------------------------------------- shape changes
    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        new_shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        old = self.shape
        try:
            out = self.data.reshape(new_shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {old} ({self.size} elements) into "
                f"{tuple(new_shape)}"
            ) from None
        return Tensor.from_op(out, (self,), lambda g: (g.reshape(old),), "reshape")

    def transpose(self, *axes: int) -> Tensor:
        """Permute axes (reverse them when none are given), like ``np.transpose``."""
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        perm = tuple(range(self.ndim))[::-1] if not axes else axes
        if sorted(a % max(self.ndim, 1) for a in perm) != list(range(self.ndim)):
            raise ValueError(f"transpose axes {perm} are not a permutation of {self.ndim} axes")
        inverse = tuple(np.argsort([a % self.ndim for a in perm])) if self.ndim else ()
        return Tensor.from_op(
            self.data.transpose(perm), (self,), lambda g: (g.transpose(inverse),), "transpose"
        )

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        items = index if isinstance(index, tuple) else (index,)
        for item in items:
            if isinstance(item, Tensor):
                # A Tensor holds floats, and torch refuses float indices rather than truncate.
                raise IndexError(
                    f"cannot index with a {item.dtype} Tensor (torch refuses float indices too); "
                    "index with an integer or boolean numpy array"
                )
        shape, dtype = self.shape, self.dtype
        out = self.data[index]
        advanced = any(isinstance(i, np.ndarray | list) for i in items)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            full = np.zeros(shape, dtype=dtype)
            if advanced:
                np.add.at(full, index, g)  # repeated indices must add, not overwrite
            else:
                full[index] = g
            return (full,)

        return Tensor.from_op(np.asarray(out), (self,), backward, "getitem")

    # ------------------------------------------------------------------- elementwise maps
    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * out,), "exp")

    def log(self) -> Tensor:
        x = self.data
        return Tensor.from_op(np.log(x), (self,), lambda g: (g / x,), "log")

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor.from_op(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self) -> Tensor:
        # σ(x) = 1/(1 + e^{-x}) evaluated as e^{x}/(1 + e^{x}) for x < 0 (scipy's expit): no
        # overflow, and full relative precision in the tails (σ(-40) ≈ 4e-18, not 0).
        out = expit(self.data).astype(self.dtype, copy=False)  # scipy computes float16 in 64
        return Tensor.from_op(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self) -> Tensor:
        x = self.data
        return Tensor.from_op(np.maximum(x, 0), (self,), lambda g: (g * (x > 0),), "relu")

    def gelu(self, approximate: str = "none") -> Tensor:
        """GELU(x) = x Φ(x); ``approximate="tanh"`` uses the tanh formula (both as in torch)."""
        x = self.data
        if approximate == "none":
            # Python-float constants (math, not np.sqrt) keep float32 inputs float32.
            cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))).astype(x.dtype, copy=False))
            pdf = np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
            return Tensor.from_op(x * cdf, (self,), lambda g: (g * (cdf + x * pdf),), "gelu")
        if approximate == "tanh":
            c = math.sqrt(2 / math.pi)
            inner = c * (x + 0.044715 * x**3)
            t = np.tanh(inner)
            out = 0.5 * x * (1 + t)
            d_inner = c * (1 + 3 * 0.044715 * x * x)

            def backward(g: np.ndarray) -> tuple[np.ndarray]:
                return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner),)

            return Tensor.from_op(out, (self,), backward, "gelu")
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")

    # ------------------------------------------------------------ normalising along an axis
    def logsumexp(self, axis: Axis = -1, keepdims: bool = False) -> Tensor:
        """log ∑ exp(x) over ``axis``, computed as m + log ∑ exp(x - m) with m = max.

        A slice that is all −inf has no mass: its value is −inf (as torch) and its gradient 0
        (torch's is NaN there), so a fully masked row does not poison the rest of a graph.
        """
        shape = self.shape
        axes = _normalize_axes(axis, self.ndim)
        m = self.data.max(axis=axes, keepdims=True)
        m = np.where(np.isneginf(m), 0, m)  # all −inf: shift by 0, not by −inf (−inf − −inf)
        e = np.exp(self.data - m)
        s = e.sum(axis=axes, keepdims=True)
        with np.errstate(divide="ignore"):
            out_keep = m + np.log(s)
        out = (
            out_keep
            if keepdims
            else np.asarray(out_keep.reshape([n for i, n in enumerate(shape) if i not in axes]))
        )

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            g_keep = g if keepdims or not axes else np.expand_dims(g, axes)
            return (g_keep * (e / np.where(s > 0, s, 1)),)  # d lse / dx = softmax(x)

        return Tensor.from_op(out, (self,), backward, "logsumexp")

    def softmax(self, axis: int = -1) -> Tensor:
        e = np.exp(self.data - self.data.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # J^T g for J = diag(p) - p p^T:  p ⊙ (g - <g, p>)
            return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)

        return Tensor.from_op(out, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1) -> Tensor:
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        out = shifted - lse

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

        return Tensor.from_op(out, (self,), backward, "log_softmax")


def _check_same_dtype(tensors: Sequence[Tensor], op: str) -> list[Tensor]:
    ts = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not ts:
        raise ValueError(f"{op} needs at least one tensor")
    dtypes = {t.dtype for t in ts}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: tensors have mixed dtypes {sorted(str(d) for d in dtypes)}")
    return ts


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into the pieces."""
    ts = _check_same_dtype(tensors, "concatenate")
    try:
        out = np.concatenate([t.data for t in ts], axis=axis)
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(f"concatenate along axis {axis}: shapes {shapes}: {exc}") from None
    bounds = np.cumsum([t.shape[axis] for t in ts])[:-1]

    def backward(g: np.ndarray) -> list[np.ndarray]:
        return np.split(g, bounds, axis=axis)

    return Tensor.from_op(out, ts, backward, "concatenate")


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Stack same-shape tensors along a new axis."""
    ts = _check_same_dtype(tensors, "stack")
    try:
        out = np.stack([t.data for t in ts], axis=axis)
    except ValueError as exc:
        shapes = [t.shape for t in ts]
        raise ValueError(f"stack along axis {axis}: shapes {shapes}: {exc}") from None
    n = len(ts)

    def backward(g: np.ndarray) -> list[np.ndarray]:
        return [np.take(g, i, axis=axis) for i in range(n)]

    return Tensor.from_op(out, ts, backward, "stack")
