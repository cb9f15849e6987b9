"""A search space: which hyper-parameters a trial samples, from which distributions, and the Hydra
overrides each value becomes.

A sweep is a function ``θ ↦ f(θ)`` (train with hyper-parameters θ, return the validation loss)
that is expensive, noisy and has no gradient. The space says where θ lives:

- ``lr`` and ``weight_decay``: *log*-uniform on ``[low, high]``, ``log θ ~ U(log low, log high)``,
  because their effect is multiplicative (1e-4 → 1e-3 matters as much as 1e-2 → 1e-1);
- ``width`` (the MLP's hidden layer) and ``batch_size``: a categorical choice among given values;
- ``optimizer``: a categorical choice among ``configs/optim/`` entries (``adamw``, ``sgd``), or
  ``scratch:<name>`` for one of layer 5's own optimisers through ``configs/optim/scratch.yaml``
  (``optim=scratch optim.optimizer.name=<name>``).

A trial's values become Hydra overrides (``optim.lr=0.003``, ``model.hidden=[128]``, ``optim=sgd``)
that :func:`layer3_framework.train.compose` applies on top of the sweep's base config, so a trial
is an ordinary pipeline run and its composed config can be written out and run again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from layer3_framework.train import CONFIG_DIR
from layer5_training.optim.registry import OPTIMIZERS

OPTIM_FILES = {p.stem for p in (CONFIG_DIR / "optim").glob("*.yaml")}


class SearchSpaceError(ValueError):
    """A search space names an unknown parameter or gives it a range it cannot have."""


@dataclass(frozen=True)
class Parameter:
    """One searchable hyper-parameter: how it is sampled and the overrides a value becomes."""

    kind: str  # "log_float": log-uniform on [low, high]; "choice": one of the values
    overrides: Callable[[Any], list[str]]
    meaning: str


def _optimizer_overrides(name: str) -> list[str]:
    """``optim=<name>``, or for ``scratch:<name>`` the scratch config switched to that optimiser,
    its ``betas`` removed when the optimiser takes none (SGD, RMSprop, Adagrad, Adafactor)."""
    if not name.startswith("scratch:"):
        return [f"optim={name}"]
    scratch = name.removeprefix("scratch:")
    overrides = ["optim=scratch", f"optim.optimizer.name={scratch}"]
    if "betas" not in inspect.signature(OPTIMIZERS[scratch]).parameters:
        overrides.append("~optim.optimizer.betas")
    return overrides


def _check_optimizers(names: Sequence[str]) -> None:
    for name in names:
        scratch = str(name).removeprefix("scratch:")
        known = scratch in OPTIMIZERS if str(name).startswith("scratch:") else name in OPTIM_FILES
        if not known:
            raise SearchSpaceError(
                f"search space optimizer {name!r}: expected one of {sorted(OPTIM_FILES)} "
                f"(configs/optim/) or scratch:<name> with a name of {sorted(OPTIMIZERS)}"
            )


PARAMETERS: dict[str, Parameter] = {
    "lr": Parameter("log_float", lambda v: [f"optim.lr={v!r}"], "learning rate (optim.lr)"),
    "weight_decay": Parameter(
        "log_float",
        lambda v: [f"optim.optimizer.weight_decay={v!r}"],
        "weight decay (optim.optimizer.weight_decay)",
    ),
    "width": Parameter(
        "choice", lambda v: [f"model.hidden=[{int(v)}]"], "MLP hidden width (model.hidden)"
    ),
    "batch_size": Parameter(
        "choice", lambda v: [f"data.batch_size={int(v)}"], "batch size (data.batch_size)"
    ),
    "optimizer": Parameter(
        "choice", _optimizer_overrides, "configs/optim entry, or scratch:<name>"
    ),
}


def _check_range(name: str, bounds: Any) -> None:
    ok = (
        isinstance(bounds, Sequence)
        and len(bounds) == 2
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        and 0 < bounds[0] < bounds[1]
    )
    if not ok:
        raise SearchSpaceError(
            f"search space {name}={bounds!r}: expected [low, high] with 0 < low < high "
            "(sampled log-uniformly)"
        )


def _check_choices(name: str, values: Any) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise SearchSpaceError(f"search space {name}={values!r}: expected a non-empty list")


def _check_names(names: Sequence[str] | Mapping[str, Any]) -> None:
    for name in names:
        if name not in PARAMETERS:
            raise SearchSpaceError(
                f"unknown search-space parameter {name!r}; expected one of {list(PARAMETERS)}"
            )


def check_space(space: Mapping[str, Any]) -> None:
    """Refuse an empty space, an unknown parameter name, or a range it cannot have."""
    if not space:
        raise SearchSpaceError(f"the search space is empty; known parameters: {list(PARAMETERS)}")
    _check_names(space)
    for name, spec in space.items():
        if PARAMETERS[name].kind == "log_float":
            _check_range(name, spec)
        else:
            _check_choices(name, spec)
    if "optimizer" in space:
        _check_optimizers(space["optimizer"])


def sample(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's values, drawn by its study's sampler (TPE, random...)."""
    check_space(space)
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if PARAMETERS[name].kind == "log_float":
            params[name] = trial.suggest_float(name, float(spec[0]), float(spec[1]), log=True)
        else:
            params[name] = trial.suggest_categorical(name, list(spec))
    return params


def to_overrides(params: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides that set ``params`` (``{"lr": 0.01}`` → ``["optim.lr=0.01"]``)."""
    _check_names(params)
    return [o for name, value in params.items() for o in PARAMETERS[name].overrides(value)]
