"""The training pipeline's entry point: a Hydra config in, a run folder out.

    python -m layer3_framework.train model=cnn data=cifar10 trainer.max_steps=200
    python -m layer3_framework.train experiment=cifar10_cnn trainer.precision=bf16
    python -m layer3_framework.train -m optim.lr=0.01,0.1              # sweep: one run per value
    python -m layer3_framework.train resume=runs/layer3_framework/train/<time>   # continue a run

Hydra composes ``configs/train.yaml`` from one file per concern — ``model/``, ``data/``,
``optim/``, ``trainer/``, ``logger/`` — then an optional ``experiment/`` file that overrides
several at once, then the command line.

**Configs name what they build** (lightning-hydra-template). A ``model``, ``data`` or ``optim``
entry carries ``_target_``, the import path of the class or function it builds, and this module
only instantiates (``hydra.utils.instantiate``); it holds no table of model or dataset names. A
new model, dataset or optimizer is its own module plus one YAML file. What is known only later
is supplied at build time, in this order (the order of the random draws of a run):

1. the data module (``data._target_``, :class:`layer3_framework.data.DataModule`) is set up;
2. the model is built with the keys its config marks ``???`` taken from the data module's
   :meth:`~layer3_framework.data.DataModule.model_kwargs` (``num_classes``, ``vocab_size``...),
   after ``seed_everything(seed)``, so its initial weights are a function of the seed;
3. the optimizer (``optim.optimizer``, ``_partial_``) gets the model's parameters, the schedule
   (``optim.scheduler``, ``_partial_``; null for a constant rate) gets the optimizer.

**The whole config is checked before anything is built** (:mod:`layer3_framework.schema`):
unknown keys (also ``+key=value`` ones), values of the wrong type, a schedule shorter than the
run, an unknown device: each a :class:`~layer3_framework.schema.ConfigError`, which the command
line prints as one ``error: ...`` line (exit status 2) instead of a traceback.

**One run record.** :func:`run` opens its run with ``layer0_math.lab.open_run`` (kind
``train``), so a Hydra run writes the manifest a deliverable writes: ``running``, then ``ok``,
``failed`` (with ``error.txt``) or ``interrupted``, and ``latest`` points at the newest good
run. A multirun's sweep folder is a run of its own (kind ``multirun``, :class:`SweepRecord`)
and each trial's manifest names it as its parent.

A run writes ``runs/layer3_framework/train/<timestamp>/``: ``manifest.json``, ``metrics.json``,
``metrics.jsonl`` (every logged step), ``wandb/`` (an offline W&B run), ``checkpoints/`` (each
carrying the model's ``model_spec``, so :func:`load_model` needs no dataset) and Hydra's
``.hydra/``. :func:`run` is the whole pipeline as a function of a composed config and a folder,
so deliverables and tests call it without a command line (:func:`compose`).

**Under torchrun** the same command trains data-parallel (give every rank the same folder)::

    torchrun --standalone --nproc_per_node=2 -m layer3_framework.train experiment=mnist_mlp \
        hydra.run.dir=runs/ddp_mnist

:func:`run` joins the process group (gloo on CPU, NCCL on CUDA, one GPU per ``LOCAL_RANK``), the
loader shards each global batch ``data.batch_size`` by rank and the trainer averages the
gradients (:mod:`layer3_framework.trainer`); only rank 0 writes the run record, logs, metrics
and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from layer0_math.datasets import DatasetError
from layer0_math.lab import RunContext, open_run, runs_root
from layer3_framework import checkpoint
from layer3_framework.checkpoint import CheckpointError, ResumeError
from layer3_framework.data import DataModule, rank_and_world
from layer3_framework.device import join_process_group, resolve_device
from layer3_framework.ema import EMA
from layer3_framework.loggers import LoggerConfig, build_logger
from layer3_framework.metrics import perplexity
from layer3_framework.repro import seed_everything
from layer3_framework.schema import (
    EMA_KEYS,
    OPTIM,
    ROOT,
    ConfigError,
    check_dataclass,
    check_target,
    check_values,
    missing_keys,
)
from layer3_framework.trainer import Hook, NonFiniteLossError, Trainer, TrainerConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
LAYER, NAME = "layer3_framework", "train"
# what the command line reports as one line (the run's manifest and error.txt keep the rest)
USER_ERRORS = (ConfigError, DatasetError, NonFiniteLossError, ResumeError, CheckpointError)

OmegaConf.register_new_resolver("dlstack_runs", lambda: str(runs_root()), replace=True)


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config ``python -m layer3_framework.train <overrides>`` would run (no run folder)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides or []))


# ----------------------------------------------------------------------------- the checked plan


@dataclass
class Plan:
    """A config that passed every check: the resolved dict and the objects built from it."""

    config: dict[str, Any]  # resolved (no interpolations), without Hydra's own node
    seed: int
    data: DataModule
    trainer: TrainerConfig
    logger: LoggerConfig
    from_data: list[str]  # the model keys the data module supplies


def check_config(cfg: DictConfig | dict[str, Any]) -> Plan:
    """Check the whole config (:mod:`layer3_framework.schema`) and build its cheap parts."""
    config = _resolved(cfg)
    check_values(config, ROOT, "")
    for group in ("model", "data", "task", "optim", "trainer", "logger"):
        if not isinstance(config.get(group), dict):
            raise ConfigError(f"the config has no {group} group (configs/{group}/)")
    data = _check_data(config["data"])
    from_data = _check_model(config["model"], data)
    check_target(config["task"], "task", later=1)
    trainer = check_dataclass(TrainerConfig, config["trainer"], "trainer")
    _check_optim(config["optim"], trainer)
    logger = check_dataclass(LoggerConfig, config["logger"], "logger")
    if config.get("ema") is not None:
        check_values(config["ema"], EMA_KEYS, "ema")
    return Plan(config, config.get("seed", 0), data, trainer, logger, from_data)


def _resolved(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    try:
        config = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"the config does not resolve: {exc}") from None
    config.pop("hydra", None)
    return config


def _check_data(node: dict[str, Any]) -> DataModule:
    target = check_target(node, "data")
    if not (isinstance(target, type) and issubclass(target, DataModule)):
        raise ConfigError(
            f"data._target_={node['_target_']!r} is not a layer3_framework.data.DataModule"
        )
    return _instantiate(node, "data")


def _check_model(node: dict[str, Any], data: DataModule) -> list[str]:
    wanted = missing_keys(node)
    absent = [k for k in wanted if k not in data.SIZES]
    if absent:
        raise ConfigError(
            f"model {node.get('_target_')} needs {', '.join(absent)} from the data, but data "
            f"{data.name!r} ({type(data).__name__}) supplies {', '.join(data.SIZES)}: "
            "this model does not fit this data"
        )
    check_target(node, "model", supplied=wanted)
    return wanted


def _check_optim(node: dict[str, Any], trainer: TrainerConfig) -> None:
    check_values(node, OPTIM, "optim")
    check_target(node["optimizer"], "optim.optimizer", later=1)
    if node.get("scheduler") is None:
        return
    check_target(node["scheduler"], "optim.scheduler", later=1)
    length = node["scheduler"].get("total_steps")
    if isinstance(length, int) and length < trainer.max_steps:
        raise ConfigError(
            f"optim.total_steps={length} is shorter than trainer.max_steps={trainer.max_steps}: "
            "the LR schedule would end before the run does (leave optim.total_steps at "
            "${trainer.max_steps}, or pin it to at least the longest run that resumes from here)"
        )


def _instantiate(node: dict[str, Any], where: str) -> Any:
    """``hydra.utils.instantiate``; a constructor's refusal is a ConfigError naming ``where``."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise ConfigError(f"{where}: {node.get('_target_')} refused its config: {cause}") from None


# ----------------------------------------------------------------------------- building


def build_model(node: dict[str, Any], data: DataModule) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model a ``model`` config names, its ``???`` sizes filled from ``data``; and its spec.

    The spec (``target``, ``kwargs``, ``preprocessing``) is what a checkpoint stores so that the
    model can be rebuilt without the dataset.
    """
    sizes = data.model_kwargs()
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    kwargs.update({k: sizes[k] for k in missing_keys(node)})
    model = _instantiate({"_target_": node["_target_"], **kwargs}, "model")
    spec = {"target": node["_target_"], "kwargs": kwargs, "preprocessing": data.preprocessing()}
    return model, spec


def build_optimizer(
    node: dict[str, Any], task: torch.nn.Module
) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer over the task's trainable parameters and its per-step schedule (or None)."""
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = _instantiate(node["optimizer"], "optim.optimizer")(params)
    scheduler = None
    if node.get("scheduler") is not None:
        try:
            scheduler = _instantiate(node["scheduler"], "optim.scheduler")(optimizer)
        except ValueError as exc:  # the schedule's own checks run when it gets its optimizer
            raise ConfigError(f"optim.scheduler: {exc}") from None
    return optimizer, scheduler


def run(
    cfg: DictConfig,
    run_dir: Path,
    *,
    device: str | None = None,
    progress: bool | None = None,
    parent_id: str | None = None,
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Train what ``cfg`` describes, writing the run into ``run_dir``; return the metrics.

    The config is checked whole before the run opens; ``parent_id`` (default
    ``$DLSTACK_PARENT_RUN_ID``) names the run this one belongs to (a deliverable, a sweep).
    ``hooks``: callables run with the trainer after every step, after the config's own (an EMA):
    e.g. a tuner's pruning hook that reads ``trainer.history`` and stops a hopeless trial.
    """
    plan = check_config(cfg)
    try:
        dev = resolve_device(device if device is not None else plan.config.get("device"))
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    dev = join_process_group(dev)
    if progress is not None:
        plan.trainer.progress = progress
    with open_run(
        LAYER,
        NAME,
        preset="hydra",
        seed=plan.seed,
        config=plan.config,
        run_dir=Path(run_dir),
        parent_id=parent_id,
        device=str(dev),
        kind="train",
    ) as ctx:
        metrics = _train(plan, ctx, dev, hooks)
        if rank_and_world()[0] == 0:
            ctx.record_metrics(metrics)
    return metrics


def _train(
    plan: Plan, ctx: RunContext, dev: torch.device, hooks: Sequence[Hook] = ()
) -> dict[str, Any]:
    """Seed, build data, model, task, optimizer and logger (in this order), fit, report."""
    seed_everything(plan.seed)
    data = plan.data
    data.setup(plan.seed)
    train_loader, eval_loader = data.train_loader(plan.seed), data.eval_loader(plan.seed)
    model, spec = build_model(plan.config["model"], data)
    ctx.config["model"] = {"_target_": spec["target"], **spec["kwargs"]}  # sizes filled in
    task = _instantiate(plan.config["task"], "task")(model)
    optimizer, scheduler = build_optimizer(plan.config["optim"], task)
    name = plan.config.get("name") or f"{type(model).__name__.lower()}-{data.name}"
    # the logger closes with the run's status (ok, failed, interrupted), as the manifest does
    # only rank 0 logs: the other ranks' trainers get no logger
    logging = (
        build_logger(plan.logger, ctx.out_dir, name=name, config=ctx.config)
        if rank_and_world()[0] == 0
        else contextlib.nullcontext(None)
    )
    with logging as logger:
        trainer = Trainer(
            task,
            optimizer,
            train_loader,
            plan.trainer,
            device=dev,
            scheduler=scheduler,
            eval_loader=eval_loader,
            logger=logger,
            ckpt_dir=ctx.out_dir / "checkpoints",
            run_config=ctx.config,
            model_spec=spec,
            hooks=[*_hooks(plan.config, task), *hooks],
        )
        if plan.config.get("resume"):
            trainer.resume(_checkpoint_source(Path(plan.config["resume"])))
        history = trainer.fit()
    return _metrics(trainer, history, data)


def _hooks(config: dict[str, Any], task: torch.nn.Module) -> list[EMA]:
    """The per-step hooks a config asks for: an EMA of the served model's weights (``ema:``)."""
    node = config.get("ema")
    return [] if node is None else [EMA(task.served_model(), **node)]


def _metrics(trainer: Trainer, history: dict[str, Any], data: DataModule) -> dict[str, Any]:
    """``step``, ``train_loss``, ``test_<name>`` for every metric the task's validation reports
    (``test_loss``, ``test_accuracy`` for a classifier), throughput and seconds."""
    metrics: dict[str, Any] = {"step": trainer.step, "train_loss": history["train/loss"]}
    metrics.update(
        {f"test_{k.removeprefix('eval/')}": v for k, v in history.items() if k.startswith("eval/")}
    )
    metrics["samples_per_sec"] = history["train/samples_per_sec"]
    metrics["train_seconds"] = history["train_seconds"]
    if data.preprocessing()["kind"] == "text":
        metrics["test_perplexity"] = perplexity(history["eval/loss"])
    metrics["checkpoint"] = str(trainer.last_good_checkpoint)
    return metrics


def load_model(path: Path, device: str | None = None) -> torch.nn.Module:
    """The trained model of a run folder (its newest good checkpoint) or a checkpoint file, in
    eval mode on ``device`` (default: the best present), rebuilt from the checkpoint's
    ``model_spec`` alone (:func:`layer3_framework.checkpoint.load_model`; no dataset, no
    config): how later layers reuse a model trained here (e.g. as a FID feature extractor)."""
    return checkpoint.load_model(Path(path), device=resolve_device(device))


def _checkpoint_source(path: Path) -> Path:
    """What ``resume=`` names: a checkpoint file, or the folder holding checkpoints (a run
    folder or its checkpoints/)."""
    if path.is_dir() and (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if not path.exists():
        raise ConfigError(f"resume={path}: no such checkpoint file or run folder")
    return path


# ----------------------------------------------------------------------------- the command line


class TrialFailed(CompactHydraException):
    """A sweep trial's error, which Hydra prints as its one line (no traceback) and stops on."""


class SweepRecord(Callback):
    """A multirun's sweep folder as a run of its own (kind ``multirun``), parent of its trials.

    Hydra calls this around a sweep (``hydra.callbacks`` in ``configs/train.yaml``): the sweep's
    run opens before the first trial and ``$DLSTACK_PARENT_RUN_ID`` carries its id into each
    trial's :func:`run`; it closes ``ok`` after the last trial, ``failed`` naming the first
    trial that failed, or ``interrupted`` when Ctrl-C or SIGTERM stops a trial (:func:`main`
    tells the sweep that is :attr:`active`).
    """

    active: SweepRecord | None = None  # the sweep this process is running, if any

    def __init__(self) -> None:
        self._opened: Any = None
        self._failure: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._opened = open_run(
            LAYER,
            NAME,
            preset="hydra",
            seed=int(config.get("seed", 0)),
            config={"overrides": list(config.hydra.overrides.task)},
            run_dir=Path(config.hydra.sweep.dir),
            parent_id=os.environ.get("DLSTACK_PARENT_RUN_ID") or None,
            kind="multirun",
        )
        ctx = self._opened.__enter__()
        os.environ["DLSTACK_PARENT_RUN_ID"] = ctx.run_id
        SweepRecord.active = self

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self._opened is None or self._failure is not None:
            return
        if getattr(job_return.status, "name", "") == "FAILED":
            error = str(job_return._return_value).removeprefix("error: ")
            self._failure = f"trial {config.hydra.job.num} failed: {error}"
            self._close(RuntimeError(self._failure))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close(None)

    def interrupted(self, exc: KeyboardInterrupt) -> None:
        """A trial was stopped by Ctrl-C or SIGTERM: so is the sweep."""
        self._close(exc)

    def _close(self, error: BaseException | None) -> None:
        if self._opened is None:
            return
        opened, self._opened = self._opened, None
        SweepRecord.active = None
        if error is None:
            opened.__exit__(None, None, None)
        else:
            opened.__exit__(type(error), error, None)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Hydra's entry point; returns the test loss (what a sweeper would minimise).

    A config, data or training error is one ``error: ...`` line on stderr (its traceback is in
    the run's ``error.txt``) and exit status 2; in a sweep the trial fails and the sweep stops.
    """
    out = HydraConfig.get().runtime.output_dir
    try:
        metrics = run(cfg, Path(out))
    except KeyboardInterrupt as exc:  # the trial's run is recorded; the sweep's must be too
        if SweepRecord.active is not None:
            SweepRecord.active.interrupted(exc)
        raise
    except USER_ERRORS as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise TrialFailed(f"error: {exc}") from None
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if rank_and_world()[0] == 0:  # under torchrun, one summary line
        print(
            f"step {metrics['step']}: test_accuracy={metrics['test_accuracy']:.4f} "
            f"test_loss={metrics['test_loss']:.4f} -> {out}"
        )
    return float(metrics["test_loss"])


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: Hydra instantiates the callback
    # from layer3_framework.train, and both must see the same SweepRecord.active
    from layer3_framework.train import main as entry

    entry()
