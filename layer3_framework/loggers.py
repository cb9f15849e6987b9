"""Experiment logging: one small interface, several sinks, and no network.

A :class:`Logger` receives ``log_metrics({"train/loss": 0.42, ...}, step)``, ``log_config(cfg)``
once, and ``close()``. Two sinks implement it:

- :class:`JsonlLogger` appends one JSON object per call to ``metrics.jsonl`` in the run folder —
  the plain-text record tests and scripts read (``read_jsonl``).
- :class:`WandbLogger` writes a Weights & Biases run **offline by default**: no account, no
  network; the run lives in ``<run folder>/wandb/`` and can be uploaded later with
  ``wandb sync``. ``WANDB_MODE`` is honoured (``online`` to stream, ``disabled`` to skip it).

:class:`CompositeLogger` fans one call out to several sinks, so the trainer talks to exactly one
logger whatever the configuration (``logger.backends: [jsonl, wandb]``).
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("jsonl", "wandb")


class Logger(ABC):
    """Where a run's metrics go."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Record the run's resolved config (once, at the start)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Flush and release resources."""


class JsonlLogger(Logger):
    """One JSON object per line: ``{"step": 100, "train/loss": 0.42, ...}``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records a :class:`JsonlLogger` wrote."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class WandbLogger(Logger):
    """A Weights & Biases run in ``<run_dir>/wandb``; mode from ``WANDB_MODE``, else offline."""

    def __init__(
        self,
        run_dir: Path,
        *,
        project: str = "dlstack",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        import wandb

        self.mode = os.environ.get("WANDB_MODE", "offline")
        if self.mode not in ("offline", "online", "disabled", "dryrun", "run"):
            raise ValueError(
                f"WANDB_MODE={self.mode!r} is not a W&B mode; expected offline, online or disabled"
            )
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            mode=self.mode,
            dir=str(run_dir),
            project=project,
            name=name,
            config=dict(config or {}),
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    @property
    def run_path(self) -> Path | None:
        """The offline run folder (None when disabled)."""
        directory = getattr(self._run, "dir", None)
        return Path(directory).parent if directory and self.mode != "disabled" else None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=int(step))

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._run.config.update(dict(config), allow_val_change=True)

    def close(self) -> None:
        self._run.finish()


class CompositeLogger(Logger):
    """Sends every call to each of ``loggers``."""

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = list(loggers)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_config(config)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()


@dataclass
class LoggerConfig:
    """The ``logger`` config group: which sinks, and the W&B project name."""

    backends: list[str] = field(default_factory=lambda: ["jsonl"])
    project: str = "dlstack"

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown logger backend(s) {unknown}; expected some of {BACKENDS}")


def build_logger(
    cfg: LoggerConfig, run_dir: Path, *, name: str | None = None, config: Mapping | None = None
) -> CompositeLogger:
    """The composite logger ``cfg`` asks for, writing into ``run_dir``."""
    sinks: list[Logger] = []
    for backend in cfg.backends:
        if backend == "jsonl":
            sinks.append(JsonlLogger(Path(run_dir) / "metrics.jsonl"))
        else:
            sinks.append(WandbLogger(run_dir, project=cfg.project, name=name, config=config))
    logger = CompositeLogger(sinks)
    if config is not None:
        logger.log_config(config)
    return logger
