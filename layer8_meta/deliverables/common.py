"""What layer 8's deliverables share: the runs folder they read, and which layers have runs."""

from __future__ import annotations

from pathlib import Path

from layer0_math.lab import RunContext, built_layers
from layer8_meta.registry import Registry


def runs_dir_of(ctx: RunContext) -> Path:
    """The runs folder this run lives in (``<runs>/<layer>/<deliverable>/<timestamp>``)."""
    return ctx.out_dir.parents[2]


def open_registry(ctx: RunContext) -> Registry:
    """The registry of this run's runs folder, brought up to date (incremental)."""
    registry = Registry.open(runs_dir=runs_dir_of(ctx))
    registry.index()
    return registry


def layers_without_runs(registry: Registry) -> list[str]:
    """Built layers below this one with no recorded run yet (their ``make layerN`` makes one)."""
    seen = {layer for layer, _ in registry.deliverables()}
    return [layer for layer in built_layers() if layer not in seen and layer != "layer8_meta"]
