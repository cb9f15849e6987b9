"""Deliverables: functions ``fn(ctx) -> metrics`` with a config per preset, found per layer.

A layer's deliverables live in its ``deliverables`` package, one module per deliverable; the
package's ``__init__`` imports each function and lists them in ``__all__`` in run order.
Presets are written one way::

    @deliverable(quick={...every key...}, full={...only the keys that change...}, headline=[...])

``full`` is a set of changes to ``quick``: the full config is ``{**quick, **full}``, and a key
``quick`` lacks is an error at import (a misspelt key must not be silently ignored).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from layer0_math.runrecord import RunContext, open_run

PRESETS = ("quick", "full")

Metrics = dict[str, Any]
DeliverableFn = Callable[[RunContext], Metrics]


@dataclass(frozen=True)
class DeliverableSpec:
    """What :func:`deliverable` attaches to a function: name, preset configs, headline metrics."""

    name: str
    presets: dict[str, dict[str, Any]]
    headline: tuple[str, ...]


def deliverable(
    *,
    quick: dict[str, Any] | None = None,
    full: dict[str, Any] | None = None,
    headline: Sequence[str] = (),
) -> Callable[[DeliverableFn], DeliverableFn]:
    """Mark ``fn(ctx) -> metrics`` as a deliverable with one config per preset.

    ``quick`` holds every key; ``full`` only the keys whose full-size value differs (missing
    keys come from ``quick``). ``headline`` names the metrics the summary table shows (all
    metrics are written to ``metrics.json`` either way).
    """
    quick_cfg = dict(quick or {})
    changes = dict(full or {})
    unknown = sorted(set(changes) - set(quick_cfg))
    if unknown:
        raise ValueError(
            f"full preset sets key(s) {unknown} that quick lacks; full lists changes to quick, "
            f"whose keys are {sorted(quick_cfg)}"
        )

    def mark(fn: DeliverableFn) -> DeliverableFn:
        fn.__dlstack_deliverable__ = DeliverableSpec(  # type: ignore[attr-defined]
            name=fn.__name__,
            presets={"quick": quick_cfg, "full": {**quick_cfg, **changes}},
            headline=tuple(headline),
        )
        return fn

    return mark


def spec_of(fn: DeliverableFn) -> DeliverableSpec:
    spec = getattr(fn, "__dlstack_deliverable__", None)
    if spec is None:
        raise TypeError(f"{fn!r} is not a deliverable: decorate it with @deliverable(...)")
    return spec


def deliverables_of(module: ModuleType) -> list[DeliverableFn]:
    """The deliverables of a layer's ``deliverables`` package, in run order (its ``__all__``).

    A single ``deliverables.py`` module without ``__all__`` gives its deliverables in the order
    they are defined.
    """
    names = getattr(module, "__all__", None)
    if names is None:
        if hasattr(module, "__path__"):
            raise TypeError(
                f"{module.__name__} is a package: list its deliverables in __all__ (run order)"
            )
        found = [v for v in vars(module).values() if hasattr(v, "__dlstack_deliverable__")]
        return sorted(found, key=lambda fn: fn.__code__.co_firstlineno)
    fns = [getattr(module, n) for n in names]
    for n, fn in zip(names, fns, strict=True):
        spec_of(fn)  # a name in __all__ that is not a deliverable is an error, not skipped
        if spec_of(fn).name != n:
            raise TypeError(f"{module.__name__}.__all__ names {n!r} for {spec_of(fn).name!r}")
    return fns


def deliverable_named(module: ModuleType, name: str) -> DeliverableFn:
    """One deliverable of ``module`` by name; ValueError naming the known ones otherwise."""
    for fn in deliverables_of(module):
        if spec_of(fn).name == name:
            return fn
    names = [spec_of(fn).name for fn in deliverables_of(module)]
    raise ValueError(f"unknown deliverable {name!r} in {module.__name__}; expected one of {names}")


def resolve_config(
    fn: DeliverableFn, preset: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preset's config with overrides applied; unknown presets or keys are errors."""
    spec = spec_of(fn)
    if preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(spec.presets)}")
    config = dict(spec.presets[preset])
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(
                f"unknown config key {key!r} for {spec.name}; expected one of {sorted(config)}"
            )
        config[key] = value
    return config


def layer_of(fn: DeliverableFn) -> str:
    """The layer package a deliverable belongs to (``layer1_autograd`` for its functions)."""
    return fn.__module__.split(".")[0]


def seed_everything_numpy(seed: int) -> None:
    """Seed Python's and numpy's global generators (torch is seeded in layer 3)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state, seeded for old code paths)


def blas_thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """Limit numpy's BLAS to ``threads`` threads while a block runs (None or 0: no limit).

    A deliverable opts in with a ``blas_threads`` config key. The scratch layers' matrices are
    small to mid-sized: a second BLAS thread gains little on an idle 2-core machine, and on a
    busy one every product waits at a barrier for a parked thread (measured here: up to 25x
    slower than one thread).
    """
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def run_deliverable(
    fn: DeliverableFn,
    *,
    preset: str = "quick",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    runs_dir: Path | None = None,
    device: str | None = None,
    run_dir: Path | None = None,
    parent_id: str | None = None,
) -> Metrics:
    """Run one deliverable in this process through :func:`open_run`; return its metrics.

    The run folder is ``run_dir`` when given (a layer runner chooses it for its child), else a
    new one under ``runs_dir``. Failures are recorded by the opener and propagate.
    """
    spec = spec_of(fn)
    config = resolve_config(fn, preset, overrides)
    with open_run(
        layer_of(fn),
        spec.name,
        preset=preset,
        seed=seed,
        config=config,
        run_dir=run_dir,
        runs_dir=runs_dir,
        parent_id=parent_id,
        device=device,
    ) as ctx:
        seed_everything_numpy(seed)
        with blas_thread_limit(config.get("blas_threads")):
            metrics = fn(ctx)
        if not isinstance(metrics, dict):
            raise TypeError(
                f"deliverable {spec.name} returned {type(metrics).__name__}, not a dict"
            )
        ctx.record_metrics(metrics)
    return metrics
