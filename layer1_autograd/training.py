"""The one training loop of the scratch engines (layers 1 and 2), its schedules and its stop.

Every scratch model is trained by the same loop; only "what one step's loss is" differs:

    for t = 0 … T−1:
        L_t = loss_fn(t)                  the caller: draw a batch, run the forward pass
        stop if L_t is not finite         NonFiniteLossError(step t, last finite loss)
        ∇ ← 0;  backward(L_t)             autograd (Tensor, Value) or hand-derived gradients
        clip:  ∇ ← ∇ · min(1, c / ‖∇‖₂)   global norm over all parameters (Pascanu et al., 2013)
        η ← schedule(t);  θ ← step(θ, ∇, η)
        every k steps: evaluate(t + 1)    with the mean training loss since the last evaluation

The loop owns the order of these operations, the learning rate, the progress bar, the history
and the one reaction to a non-finite loss; the caller owns the data order and the model. It draws
no random numbers itself, so a run is as deterministic as the caller's generator.

The loss only has to offer ``backward()`` and its value (``item()`` for a Tensor, ``.data`` for a
scalar :class:`~layer1_autograd.value.Value`). The manual-backprop MLP has no graph: its
gradients are computed with the loss, and :class:`HandGradients` is a loss whose ``backward()``
hands them to the optimizer, so it is not a special case. The optimizer is anything with ``lr``,
``zero_grad()`` and ``step()``: :class:`~layer1_autograd.nn.SGD`, or :class:`ScalarSGD`, the same
SGD applied to a list of scalar Values.

Schedules, with T the number of steps and η̂ the peak rate:

- cosine:        η_t = η̂ · ½ (1 + cos(π t / T))
- linear decay:  η_t = η̂ · (1 − d t / T)                      (ends at (1 − d) η̂)
- one-cycle:     η_t = η̂ (t + 1) / R for t < R = max(1, ⌊wT⌋), then η̂ (T − t) / (T − R)
  (a linear warmup over the fraction w lets a large rate start safely; the decay to 0 lets
  the weights settle)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from layer1_autograd.nn import SGD
from layer1_autograd.tensor import Tensor
from layer1_autograd.value import Value

__all__ = [
    "NonFiniteLossError",
    "History",
    "HandGradients",
    "ScalarSGD",
    "EpochShuffler",
    "fit",
    "clip_grad_norm",
    "cosine",
    "linear_decay",
    "one_cycle",
]

Schedule = Callable[[int], float]


class Optimizer(Protocol):
    """What :func:`fit` needs from an optimizer (``params`` only when clipping)."""

    lr: float

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


class Loss(Protocol):
    """What :func:`fit` needs from a loss: a backward pass (and ``item()`` or ``.data``)."""

    def backward(self) -> None: ...


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or ±inf: raised before its backward pass, naming the step."""

    def __init__(self, name: str, step: int, loss: float, history: History) -> None:
        self.step, self.loss, self.history = step, loss, history
        self.last_finite = history.losses[-1] if history.losses else None
        if self.last_finite is None:
            before = "no finite loss before it"
        else:
            before = f"last finite loss {self.last_finite:.6g} at step {step - 1}"
        super().__init__(f"{name}: non-finite training loss {loss} at step {step} ({before})")


@dataclass
class History:
    """What a run of :func:`fit` recorded: the loss and learning rate of every step, and one
    dict per evaluation (``step``, ``train_loss`` = mean since the previous one, the rest from
    ``evaluate``)."""

    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)

    def column(self, key: str) -> list[float]:
        """One key of every evaluation, in order (e.g. ``column("val_loss")``)."""
        return [e[key] for e in self.evals]

    def columns(self) -> dict[str, list[float]]:
        """The evaluations as {key: values}: what a history.json holds."""
        keys = self.evals[0].keys() if self.evals else ()
        return {k: self.column(k) for k in keys}


class HandGradients:
    """A loss whose gradients were derived by hand (no graph): ``backward()`` hands them over.

    ``grads[name]`` is stored as the ``.grad`` of ``params[name]``, the tensors the optimizer
    updates (for the manual MLP they share memory with its parameter arrays).
    """

    def __init__(
        self, value: float, grads: dict[str, np.ndarray], params: dict[str, Tensor]
    ) -> None:
        missing = sorted(set(grads) - set(params))
        if missing:
            raise KeyError(f"HandGradients: gradients for unknown parameters {missing}")
        self.value, self.grads, self.params = float(value), grads, params

    def item(self) -> float:
        return self.value

    def backward(self) -> None:
        for name, g in self.grads.items():
            self.params[name].grad = g


class ScalarSGD:
    """:class:`~layer1_autograd.nn.SGD` for scalar Values: the one SGD updates them as a vector.

    Each step gathers every Value's ``grad`` into the gradient of a 1-D tensor holding their
    ``data``, lets SGD update it (momentum and weight decay included), and writes the numbers
    back. Elementwise, these are the same float64 operations as updating each scalar in turn.
    """

    def __init__(
        self, params: Sequence[Value], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        self.values = list(params)
        self._vector = Tensor(
            np.array([p.data for p in self.values], np.float64), requires_grad=True
        )
        self._sgd = SGD([self._vector], lr=lr, momentum=momentum, weight_decay=weight_decay)

    @property
    def lr(self) -> float:
        return self._sgd.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._sgd.lr = value

    def zero_grad(self) -> None:
        for p in self.values:
            p.grad = 0.0

    def step(self) -> None:
        self._vector.data[...] = [p.data for p in self.values]
        self._vector.grad = np.array([p.grad for p in self.values], np.float64)
        self._sgd.step()
        for p, x in zip(self.values, self._vector.data.tolist(), strict=True):
            p.data = x


class EpochShuffler:
    """The data order of epoch-based training: a fresh permutation of ``n`` examples per epoch.

    ``indices(step)`` is the batch of that step; the permutation is drawn from ``rng`` when a
    step opens an epoch, so calling it for steps 0, 1, 2, … in order draws exactly one
    permutation per epoch. ``drop_last`` drops the short final batch (every batch full).
    """

    def __init__(
        self, n: int, batch_size: int, rng: np.random.Generator, *, drop_last: bool = False
    ) -> None:
        if n < 1 or batch_size < 1 or (drop_last and batch_size > n):
            raise ValueError(
                f"EpochShuffler needs n >= 1 and 1 <= batch_size (<= n with drop_last), "
                f"got n={n}, batch_size={batch_size}"
            )
        self.n, self.batch_size, self.rng = n, batch_size, rng
        self.steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        self._perm: np.ndarray | None = None

    def indices(self, step: int) -> np.ndarray:
        b = step % self.steps_per_epoch
        if b == 0 or self._perm is None:
            self._perm = self.rng.permutation(self.n)
        return self._perm[b * self.batch_size : (b + 1) * self.batch_size]


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most ``max_norm``; return the norm before.

    n = √(∑_p ‖∇_p‖²); if n > c every gradient is multiplied by c / n (torch's clip_grad_norm_).
    """
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= g.dtype.type(scale)
    return norm


# ----------------------------------------------------------------------------- schedules


def _check_schedule(name: str, peak: float, total: int) -> None:
    if total < 1 or not peak > 0:
        raise ValueError(f"{name} needs total >= 1 and peak > 0, got total={total}, peak={peak}")


def cosine(peak: float, total: int) -> Schedule:
    """η_t = η̂ · ½ (1 + cos(π t / T)): from ``peak`` at t = 0 to 0 at t = T."""
    _check_schedule("cosine", peak, total)
    return lambda step: peak * 0.5 * (1.0 + math.cos(math.pi * step / total))


def linear_decay(peak: float, total: int, decay: float = 1.0) -> Schedule:
    """η_t = η̂ (1 − d t / T): a straight line from ``peak`` to (1 − d) · peak at t = T."""
    _check_schedule("linear_decay", peak, total)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"linear_decay needs 0 <= decay <= 1, got {decay}")
    return lambda step: peak * (1.0 - decay * step / total)


def one_cycle(peak: float, total: int, warmup: float = 0.15) -> Schedule:
    """Linear warmup to ``peak`` over ``warmup · total`` steps, then linear decay to 0 at T."""
    _check_schedule("one_cycle", peak, total)
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"one_cycle needs 0 <= warmup < 1, got {warmup}")
    rise = max(1, int(warmup * total))

    def lr(step: int) -> float:
        if step < rise:
            return peak * (step + 1) / rise
        return peak * max(0.0, (total - step) / max(1, total - rise))

    return lr


# ----------------------------------------------------------------------------- the loop


def _loss_value(loss: Any) -> float:
    """The float of a Tensor (``item()``), a :class:`HandGradients` or a Value (``.data``)."""
    return float(loss.item()) if hasattr(loss, "item") else float(loss.data)


class _NoBar:
    """The progress bar when none is asked for: every call is a no-op."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Loop:
    """One run's settings, so that each phase of a step is a small named method."""

    optimizer: Optimizer
    schedule: Schedule | None
    clip_norm: float | None
    after_backward: Callable[[int], None] | None
    evaluate: Callable[[int], dict[str, float] | None] | None
    eval_every: int
    total: int
    name: str
    history: History = field(default_factory=History)
    _since_eval: int = 0

    def train_step(self, step: int, loss: Any) -> float:
        value = _loss_value(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(self.name, step, value, self.history)
        self.optimizer.zero_grad()
        loss.backward()
        if self.clip_norm is not None:
            clip_grad_norm(self.optimizer.params, self.clip_norm)  # type: ignore[attr-defined]
        if self.after_backward is not None:
            self.after_backward(step)
        if self.schedule is not None:
            self.optimizer.lr = self.schedule(step)
        self.optimizer.step()
        self.history.losses.append(value)
        self.history.lrs.append(self.optimizer.lr)
        self._since_eval += 1
        return value

    def maybe_evaluate(self, done: int) -> None:
        """After ``done`` steps: every ``eval_every`` steps and after the last one."""
        if self.evaluate is None or not (
            (self.eval_every and done % self.eval_every == 0) or done == self.total
        ):
            return
        recent = self.history.losses[-self._since_eval :] if self._since_eval else [math.nan]
        record = {"step": done, "train_loss": float(np.mean(recent))}
        record.update(self.evaluate(done) or {})
        self.history.evals.append(record)
        self._since_eval = 0


def fit(
    loss_fn: Callable[[int], Loss],
    optimizer: Optimizer,
    steps: int,
    *,
    schedule: Schedule | None = None,
    clip_norm: float | None = None,
    after_backward: Callable[[int], None] | None = None,
    evaluate: Callable[[int], dict[str, float] | None] | None = None,
    eval_every: int = 0,
    progress: Callable[..., Any] | None = None,
    name: str = "train",
) -> History:
    """Train for ``steps`` steps; return the :class:`History`.

    ``loss_fn(step)`` returns that step's loss (a Tensor, a Value or :class:`HandGradients`);
    ``schedule(step)`` sets the optimizer's ``lr`` before each update (none: ``lr`` is kept);
    ``clip_norm`` clips the global gradient norm of ``optimizer.params``; ``after_backward(step)``
    sees the gradients before the update (e.g. to record their norms); ``evaluate(done)`` runs
    after every ``eval_every`` steps and after the last (0: only after the last), and what it
    returns joins that step's record in ``History.evals``. ``progress`` is a tqdm-style factory
    (``ctx.progress``). A non-finite loss raises :class:`NonFiniteLossError` before its backward
    pass, with the history so far; the optimizer has not taken that step.
    """
    if steps < 1 or eval_every < 0:
        raise ValueError(f"fit needs steps >= 1 and eval_every >= 0, got {steps}, {eval_every}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}")
    loop = _Loop(optimizer, schedule, clip_norm, after_backward, evaluate, eval_every, steps, name)
    bar = progress(total=steps, desc=name) if progress is not None else _NoBar()
    try:
        for step in range(steps):
            value = loop.train_step(step, loss_fn(step))
            bar.update()
            bar.set_postfix(loss=f"{value:.3f}")
            loop.maybe_evaluate(step + 1)
    finally:
        bar.close()
    return loop.history
