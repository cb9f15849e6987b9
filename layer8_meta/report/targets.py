"""Targets: the goals the issues set, and whether a run's metric meets one.

``layer8_meta/targets.yaml`` lists one goal per entry::

    {layer, deliverable, metric, goal, direction: ">=" | "<=", source, [preset], [note]}

A target *applies* to a run of (layer, deliverable) whose preset is the target's (or any preset
when it names none). Its verdict on a value v is

    met     v >= goal  (direction ">=")    or    v <= goal  (direction "<=")
    missed  otherwise
    no value   when the run did not record the metric

``metric`` is a key of the run's ``metrics.json`` (booleans read as 1 and 0), or ``seconds``:
the run's wall time from its manifest, so a time limit ("under 5 minutes") is a target too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TARGETS_FILE = Path(__file__).resolve().parent.parent / "targets.yaml"
DIRECTIONS = (">=", "<=")
REQUIRED = ("layer", "deliverable", "metric", "goal", "direction", "source")
OPTIONAL = ("preset", "note")
SECONDS = "seconds"  # the pseudo-metric: the run's wall time from its manifest


@dataclass(frozen=True)
class Target:
    layer: str
    deliverable: str
    metric: str
    goal: float
    direction: str
    source: str
    preset: str | None = None
    note: str | None = None

    def applies(self, layer: str, deliverable: str, preset: str | None) -> bool:
        if (self.layer, self.deliverable) != (layer, deliverable):
            return False
        return self.preset is None or self.preset == preset

    def verdict(self, value: float | None) -> str:
        """``met``, ``missed`` or ``no value`` (see the module docstring)."""
        if value is None or not math.isfinite(value):
            return "no value"
        ok = value >= self.goal if self.direction == ">=" else value <= self.goal
        return "met" if ok else "missed"

    def text(self) -> str:
        """The goal as a person reads it: ``>= 0.97 (issue 4)``."""
        preset = f", {self.preset} preset" if self.preset else ""
        return f"{self.direction} {self.goal:g} ({self.source}{preset})"


def _entry(raw: Any, where: str) -> Target:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {raw!r} is not a mapping; expected {{{', '.join(REQUIRED)}}}")
    missing = [k for k in REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(
            f"{where}: missing {missing}, unknown {unknown}; expected keys {list(REQUIRED)} "
            f"and optionally {list(OPTIONAL)}"
        )
    if raw["direction"] not in DIRECTIONS:
        raise ValueError(f"{where}: direction {raw['direction']!r}; expected '>=' or '<='")
    goal = raw["goal"]
    if isinstance(goal, bool) or not isinstance(goal, (int, float)) or not math.isfinite(goal):
        raise ValueError(f"{where}: goal {goal!r} is not a finite number")
    texts = {k: raw.get(k) for k in ("layer", "deliverable", "metric", "source")}
    for key, value in texts.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {key} {value!r}; expected a non-empty string")
    return Target(
        **texts,
        goal=float(goal),
        direction=raw["direction"],
        preset=raw.get("preset"),
        note=raw.get("note"),
    )


def load_targets(path: Path | None = None) -> list[Target]:
    """The targets in ``path`` (default: ``layer8_meta/targets.yaml``); a ValueError naming the
    file, the entry and what is wrong with it otherwise."""
    path = Path(path) if path is not None else TARGETS_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the targets file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    entries = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a mapping with a list under 'targets'")
    return [_entry(raw, f"{path}, target {i + 1}") for i, raw in enumerate(entries)]


def metric_value(values: dict[str, Any], metric: str) -> float | None:
    """``values[metric]`` as a number (a boolean as 1 or 0), or None when absent or not one."""
    value = values.get(metric)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None
