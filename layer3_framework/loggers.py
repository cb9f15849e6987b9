"""Experiment logging: one small interface, several sinks, and no network.

A :class:`Logger` receives ``log_metrics({"train/loss": 0.42, ...}, step)``, ``log_config(cfg)``
once, and ``close(status)`` with the run's outcome (``ok``, ``failed``, ``interrupted`` or
``stopped``, the run record's words). Used as a context manager (``with build_logger(...) as
logger:``) it closes itself with the status the block ended with: ``ok`` on a clean exit,
``interrupted`` on Ctrl-C or SIGTERM (a ``KeyboardInterrupt``), ``stopped`` on a ``RunStopped``
(a pruned trial), ``failed`` on any other exception. Three sinks implement it:

- :class:`JsonlLogger` appends one JSON object per call to ``metrics.jsonl`` in the run folder —
  the plain-text record tests and scripts read (``read_jsonl``).
- :class:`WandbLogger` writes a Weights & Biases run **offline by default**: no account, no
  network; the run lives in ``<run folder>/wandb/`` and can be uploaded later with
  ``wandb sync``. ``WANDB_MODE`` is honoured (``online`` to stream, ``disabled`` to skip it).
- :class:`MlflowLogger` writes an MLflow run to a **local** tracking store, by default the SQLite
  file ``<run folder>/mlflow.db`` (no server, no network, no telemetry): params are the flattened
  config (``optim.lr``), metrics are logged by step, and the run ends ``FINISHED``, ``FAILED`` or
  ``KILLED``. Browse it with ``mlflow ui --backend-store-uri sqlite:///<run folder>/mlflow.db``.

:class:`CompositeLogger` fans one call out to several sinks, so the trainer talks to exactly one
logger whatever the configuration (``logger.backends: [jsonl, wandb]``).
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from layer0_math.runrecord import RunStopped

BACKENDS = ("jsonl", "wandb", "mlflow")
STATUSES = ("ok", "failed", "interrupted", "stopped")  # layer0_math's run-record words


class Logger(ABC):
    """Where a run's metrics go."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_config(self, config: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Record the run's resolved config (once, at the start)."""

    def close(self, status: str = "ok") -> None:  # noqa: B027 (optional hook)
        """Flush and release resources; ``status`` is how the run ended (one of STATUSES)."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exit_status(exc))


def exit_status(exc: BaseException | None) -> str:
    """The run-record status of a block that ended with ``exc`` (None: a clean exit)."""
    if exc is None:
        return "ok"
    if isinstance(exc, RunStopped):
        return "stopped"
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {STATUSES}")
    return status


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

    def close(self, status: str = "ok") -> None:
        _check_status(status)
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

    def close(self, status: str = "ok") -> None:
        self._run.finish(exit_code=0 if _check_status(status) == "ok" else 1)


# MLflow reads these at import and at client creation: no usage telemetry leaves the machine, and
# its INFO lines (database migrations) stay out of the run's output.
MLFLOW_QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_LOGGING_LEVEL": "WARNING"}
MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "stopped": "KILLED"}
LOCAL_STORES = ("sqlite:///", "file:")
MLFLOW_PARAM_LIMIT = 6000  # characters MLflow keeps of a param's value


def mlflow_store(run_dir: Path, tracking_uri: str | None = None) -> str:
    """The tracking URI: ``tracking_uri`` if given (it must be local), else the SQLite file
    ``<run_dir>/mlflow.db``."""
    if tracking_uri is None:
        return f"sqlite:///{(Path(run_dir) / 'mlflow.db').resolve()}"
    if not tracking_uri.startswith(LOCAL_STORES):
        raise ValueError(
            f"mlflow tracking URI {tracking_uri!r} is not a local store; expected one starting "
            f"with {' or '.join(LOCAL_STORES)} (no server, no network)"
        )
    return tracking_uri


class MlflowLogger(Logger):
    """An MLflow run in a local tracking store (default ``sqlite:///<run_dir>/mlflow.db``).

    Talks to the store through ``MlflowClient`` only (no global active run), so several runs in
    one process never mix; ``run_id`` names the run for ``MlflowClient(tracking_uri).get_run``.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        experiment: str = "dlstack",
        name: str | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        for key, value in MLFLOW_QUIET_ENV.items():
            os.environ.setdefault(key, value)
        from mlflow.tracking import MlflowClient  # lazy: importing mlflow takes about a second

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.tracking_uri = mlflow_store(run_dir, tracking_uri)
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self._client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found
            else self._client.create_experiment(
                experiment, artifact_location=(Path(run_dir) / "mlartifacts").resolve().as_uri()
            )
        )
        self.run_id: str = self._client.create_run(experiment_id, run_name=name).info.run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(_number(v)), now, int(step)) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The config flattened to dotted params (``optim.lr``); values as MLflow stores them."""
        from mlflow.entities import Param

        from layer3_framework.checkpoint import flatten

        params = [
            Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v))
            for k, v in flatten(config).items()
        ]
        for p in params:
            if len(p.value) > MLFLOW_PARAM_LIMIT:
                raise ValueError(
                    f"config value {p.key} is {len(p.value)} characters; MLflow keeps at most "
                    f"{MLFLOW_PARAM_LIMIT}"
                )
        self._client.log_batch(self.run_id, params=params)

    def close(self, status: str = "ok") -> None:
        self._client.set_terminated(self.run_id, MLFLOW_STATUS[_check_status(status)])


def _number(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


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

    def close(self, status: str = "ok") -> None:
        for lg in self.loggers:
            lg.close(status)


@dataclass
class LoggerConfig:
    """The ``logger`` config group: which sinks, the W&B project (also the MLflow experiment),
    and the MLflow tracking store (None: ``sqlite:///<run folder>/mlflow.db``)."""

    backends: list[str] = field(default_factory=lambda: ["jsonl"])
    project: str = "dlstack"
    mlflow_uri: str | None = None

    def __post_init__(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"unknown logger backend(s) {unknown}; expected some of {BACKENDS}")
        if self.mlflow_uri is not None:
            mlflow_store(Path("."), self.mlflow_uri)  # refuse a remote store before the run opens


def build_logger(
    cfg: LoggerConfig, run_dir: Path, *, name: str | None = None, config: Mapping | None = None
) -> CompositeLogger:
    """The composite logger ``cfg`` asks for, writing into ``run_dir``."""
    sinks: list[Logger] = []
    for backend in cfg.backends:
        if backend == "jsonl":
            sinks.append(JsonlLogger(Path(run_dir) / "metrics.jsonl"))
        elif backend == "wandb":
            sinks.append(WandbLogger(run_dir, project=cfg.project, name=name, config=config))
        else:
            sinks.append(
                MlflowLogger(
                    run_dir, experiment=cfg.project, name=name, tracking_uri=cfg.mlflow_uri
                )
            )
    logger = CompositeLogger(sinks)
    if config is not None:
        logger.log_config(config)
    return logger
