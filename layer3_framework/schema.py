"""Checking a composed config against what it will build, before anything is built.

A Hydra config is plain data: ``trainer.max_steps=abc`` composes happily, and without a check it
fails (or, worse, runs) only when the value is first used, possibly after hours of training.
The schema of each part is the code that consumes it, so nothing is declared twice:

- a dataclass (``TrainerConfig``, ``LoggerConfig``): its fields and their type hints;
- a ``_target_`` (a model, a data module, an optimizer, a schedule): the signature of the class
  or function it names: every key must be a parameter (or, for a target taking ``**kwargs``, is
  left to its constructor), every value must fit the parameter's type hint, every required
  parameter must be set (or be supplied when the object is built);
- the run's own keys (:data:`ROOT`) and the ``optim`` group's shared keys (:data:`OPTIM`).

Type hints are read, not trusted blindly: ``int`` accepts integers only (``1.5`` and ``True``
are refused), ``float`` accepts integers too, unions and ``Literal`` are honoured, sequences are
checked element by element, and a hint this module cannot read accepts anything (the object's
own constructor still validates it). Every failure is a :class:`ConfigError` naming the key, the
value and what was expected.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

MISSING = "???"  # OmegaConf's mark of a value to be supplied (here: by the data module)

# the run's own keys: the config groups and the few top-level settings
ROOT: dict[str, Any] = {
    "seed": int,
    "device": str | None,
    "resume": str | None,
    "name": str | None,
    "model": dict,
    "data": dict,
    "optim": dict,
    "task": dict,
    "trainer": dict,
    "logger": dict,
    "ema": dict | None,
}
# the ema node (layer3_framework.ema.EMA's settings; null: no moving average)
EMA_KEYS: dict[str, Any] = {"decay": float, "warmup": bool, "use_for_eval": bool}
# an optim group's shared keys beside its optimizer and scheduler nodes
OPTIM: dict[str, Any] = {
    "lr": float,
    "total_steps": int,
    "optimizer": dict,
    "scheduler": dict | None,
}


class ConfigError(ValueError):
    """A config that cannot run; the message names the key, its value and what was expected."""


def conforms(value: Any, hint: Any) -> bool:
    """Whether a config value fits a type hint (a hint it cannot read accepts anything)."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return True
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, arm) for arm in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if origin is not None:
        return _conforms_generic(value, origin, get_args(hint))
    return _conforms_plain(value, hint)


def _conforms_plain(value: Any, hint: Any) -> bool:
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _conforms_generic(value: Any, origin: Any, args: tuple[Any, ...]) -> bool:
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, Mapping)
    if not (isinstance(origin, type) and issubclass(origin, Sequence)):
        return True  # Callable[...] and the like: the constructor judges
    if not isinstance(value, (list, tuple)):
        return False
    if origin is tuple and args and args[-1] is not Ellipsis:
        return len(value) == len(args) and all(map(conforms, value, args))
    return not args or all(conforms(v, args[0]) for v in value)


def describe(hint: Any) -> str:
    """A type hint as a reader writes it: ``int``, ``float | None``, ``list[int]``."""
    if hint is None or hint is type(None):
        return "null"
    if isinstance(hint, type) and get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def check_values(values: Mapping[str, Any], hints: Mapping[str, Any], where: str) -> None:
    """Every key of ``values`` is in ``hints`` and fits its hint; ``where`` names the node."""
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(_key(where, k) for k in unknown)}; "
            f"{where or 'the config'} takes {', '.join(sorted(hints))}"
        )
    for key, value in values.items():
        if value == MISSING:
            raise ConfigError(f"{_key(where, key)} is ??? (unset): give it a value")
        if not conforms(value, hints[key]):
            raise ConfigError(
                f"{_key(where, key)}={value!r} ({type(value).__name__}) is not valid: "
                f"expected {describe(hints[key])}"
            )


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def dataclass_hints(cls: type) -> dict[str, Any]:
    """The init fields of a dataclass and their (resolved) type hints."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def check_dataclass(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)`` after checking keys and types; its own checks become ConfigErrors."""
    check_values(values, dataclass_hints(cls), where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def import_target(path: Any, where: str) -> Callable[..., Any]:
    """The class or function a ``_target_`` names."""
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(f"{where}._target_={path!r}: expected a dotted import path")
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}._target_={path!r} cannot be imported: {exc}") from None


def parameters(target: Callable[..., Any]) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The named parameters of a class's constructor or a function, and their type hints."""
    func = target.__init__ if inspect.isclass(target) else target  # type: ignore[misc]
    params = [
        p
        for p in inspect.signature(target).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # a forward reference the library never made importable: read none
        hints = {}
    return params, {p.name: hints.get(p.name, Any) for p in params}


def _takes_var_keywords(target: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


def check_target(
    node: Mapping[str, Any], where: str, *, later: int = 0, supplied: Sequence[str] = ()
) -> Callable[..., Any]:
    """Check a ``_target_`` node against its target's signature; return the target.

    ``later``: how many leading parameters the pipeline passes when it builds the object (an
    optimizer's parameters, a schedule's optimizer). ``supplied``: the keys marked ``???`` that
    the data module fills in.
    """
    target = import_target(node.get("_target_"), where)
    params, hints = parameters(target)
    given = {k: v for k, v in node.items() if not (k.startswith("_") and k.endswith("_"))}
    given = {k: v for k, v in given.items() if k not in supplied}
    accepted = {p.name: hints[p.name] for p in params[later:]}
    if _takes_var_keywords(target):  # **kwargs: its own constructor judges the other keys
        accepted.update({k: Any for k in given if k not in accepted})
    check_values(given, accepted, where)
    required = [p.name for p in params[later:] if p.default is p.empty]
    unset = [k for k in required if k not in given and k not in supplied]
    if unset:
        raise ConfigError(
            f"{where}: {node['_target_']} needs {', '.join(unset)}, which the config does not set"
        )
    return target


def missing_keys(node: Mapping[str, Any]) -> list[str]:
    """The keys of a node marked ``???``."""
    return [k for k, v in node.items() if v == MISSING]
