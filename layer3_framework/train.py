"""The training pipeline's entry point: a Hydra config in, a run folder out.

    python -m layer3_framework.train model=cnn data=cifar10 trainer.max_steps=200
    python -m layer3_framework.train experiment=cifar10_cnn trainer.precision=bf16
    python -m layer3_framework.train -m optim.lr=0.01,0.1              # sweep: one run per value
    python -m layer3_framework.train resume=runs/layer3_framework/train/<time>   # continue a run

Hydra composes ``configs/train.yaml`` from one file per concern — ``model/``, ``data/``,
``optim/``, ``trainer/``, ``logger/`` — then an optional ``experiment/`` file that overrides
several at once, then the command line. The composed config is *struct*: overriding a key that
no file defines is an error (add a new key with ``+key=value`` only if you mean it).

A run writes ``runs/layer3_framework/train/<timestamp>/``: ``manifest.json`` (the run record of
``layer0_math.lab``, with the resolved config), ``metrics.json``, ``metrics.jsonl`` (every
logged step), ``wandb/`` (an offline W&B run), ``checkpoints/`` and Hydra's ``.hydra/``.

:func:`run` is the whole pipeline as a function of a composed config and a folder, so
deliverables and tests call it without a command line (:func:`compose`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from layer0_math.lab import RunContext, manifest, runs_root, write_json
from layer3_framework.checkpoint import latest_checkpoint, load_checkpoint, read_checkpoint
from layer3_framework.data import DataBundle, DataConfig, build_data, build_loader
from layer3_framework.device import resolve_device
from layer3_framework.loggers import LoggerConfig, build_logger
from layer3_framework.metrics import perplexity
from layer3_framework.ports import MLP, CharLM, CifarCNN
from layer3_framework.repro import seed_everything
from layer3_framework.trainer import Trainer, TrainerConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MODELS = ("mlp", "cnn", "charlm")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("none", "cosine", "onecycle")

OmegaConf.register_new_resolver("dlstack_runs", lambda: str(runs_root()), replace=True)


@dataclass
class OptimConfig:
    """The ``optim`` config group: optimizer and LR schedule."""

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "none"
    warmup_fraction: float = 0.25
    total_steps: int = 1000

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; expected one of {SCHEDULERS}")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 < self.warmup_fraction < 1:
            raise ValueError(f"optim.warmup_fraction must be in (0, 1), got {self.warmup_fraction}")


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config ``python -m layer3_framework.train <overrides>`` would run (no run folder)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides or []))


def build_model(cfg: dict[str, Any], data: DataBundle) -> torch.nn.Module:
    """The model a ``model`` config names, sized for ``data``."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    name = cfg.get("name")
    if name == "mlp":
        if data.kind != "image":
            raise ValueError(f"model 'mlp' needs image data, got {data.kind} data")
        sizes = [math.prod(data.in_shape), *kwargs.pop("hidden"), data.num_classes]
        return MLP(sizes, **kwargs)
    if name == "cnn":
        if data.kind != "image":
            raise ValueError(f"model 'cnn' needs image data, got {data.kind} data")
        c, h, _ = data.in_shape
        return CifarCNN(c, num_classes=data.num_classes, image_size=h, **kwargs)
    if name == "charlm":
        if data.kind != "text":
            raise ValueError(f"model 'charlm' needs text data, got {data.kind} data")
        return CharLM(data.num_classes, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def build_optimizer(
    cfg: OptimConfig, model: torch.nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer and (optional) per-step LR schedule an ``optim`` config describes."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
    if cfg.scheduler == "onecycle":
        # lr rises from lr/25 to lr over the warm-up, then anneals (cosine) to lr/1e4
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.lr,
            total_steps=cfg.total_steps,
            pct_start=cfg.warmup_fraction,
            cycle_momentum=cfg.name == "sgd" and cfg.momentum > 0,
        )
    elif cfg.scheduler == "cosine":
        # linear warm-up, then lr_t = lr · (1 + cos(π t / T)) / 2
        warm = max(1, int(cfg.warmup_fraction * cfg.total_steps))
        sched = torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warm, total_iters=warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.total_steps - warm),
            ],
            milestones=[warm],
        )
    else:
        sched = None
    return opt, sched


def run(
    cfg: DictConfig, run_dir: Path, *, device: str | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Train what ``cfg`` describes, writing the run into ``run_dir``; return the metrics."""
    t0, start = time.perf_counter(), time.time()
    run_dir = Path(run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    seed = int(cfg.seed)
    seed_everything(seed)
    dev = resolve_device(device if device is not None else cfg.device)
    data_cfg = DataConfig(**resolved["data"])
    trainer_cfg = TrainerConfig(**resolved["trainer"])
    if progress is not None:
        trainer_cfg.progress = progress
    data = build_data(data_cfg, seed)
    train_loader = build_loader(
        data.train,
        data_cfg.batch_size,
        shuffle=True,
        seed=seed,
        num_workers=data_cfg.num_workers,
        drop_last=data_cfg.drop_last,
    )
    eval_loader = build_loader(
        data.test,
        data_cfg.eval_batch_size,
        shuffle=False,
        seed=seed,
        num_workers=data_cfg.num_workers,
    )
    model = build_model(resolved["model"], data)
    optimizer, scheduler = build_optimizer(OptimConfig(**resolved["optim"]), model)
    logger = build_logger(
        LoggerConfig(**resolved["logger"]), run_dir, name=str(cfg.name), config=resolved
    )
    ctx = RunContext("layer3_framework", "train", "hydra", seed, resolved, run_dir, str(dev))
    write_json(run_dir / "manifest.json", manifest(ctx, start=start, seconds=0.0, status="running"))
    try:
        trainer = Trainer(
            model,
            optimizer,
            train_loader,
            trainer_cfg,
            device=dev,
            scheduler=scheduler,
            eval_loader=eval_loader,
            logger=logger,
            ckpt_dir=run_dir / "checkpoints",
            run_config=resolved,
        )
        if cfg.resume:
            trainer.resume(_checkpoint_source(Path(cfg.resume)))
        history = trainer.fit()
    except BaseException:
        seconds = time.perf_counter() - t0
        write_json(
            run_dir / "manifest.json", manifest(ctx, start=start, seconds=seconds, status="failed")
        )
        raise
    finally:
        logger.close()
    metrics: dict[str, Any] = {
        "step": trainer.step,
        "train_loss": history["train/loss"],
        "test_loss": history["eval/loss"],
        "test_accuracy": history["eval/accuracy"],
        "samples_per_sec": history["train/samples_per_sec"],
        "train_seconds": history["train_seconds"],
    }
    if data.kind == "text":
        metrics["test_perplexity"] = perplexity(history["eval/loss"])
    metrics["checkpoint"] = str(trainer.last_good_checkpoint)
    write_json(run_dir / "metrics.json", metrics)
    seconds = time.perf_counter() - t0
    write_json(run_dir / "manifest.json", manifest(ctx, start=start, seconds=seconds, status="ok"))
    return metrics


def load_model(path: Path, device: str | None = None) -> torch.nn.Module:
    """The trained model of a run folder (its newest checkpoint) or a checkpoint file, in eval
    mode — how later layers reuse a model trained here (e.g. as a FID feature extractor)."""
    source = _checkpoint_source(Path(path))
    if source.is_dir():
        found = latest_checkpoint(source)
        if found is None:
            raise FileNotFoundError(f"no complete checkpoint in {source}")
        source = found
    _, meta = read_checkpoint(source)
    config = meta["config"]
    data = build_data(DataConfig(**config["data"]), int(config["seed"]))
    model = build_model(config["model"], data)
    load_checkpoint(source, model=model)
    return model.to(resolve_device(device)).eval()


def _checkpoint_source(path: Path) -> Path:
    """A checkpoint file, or the folder holding checkpoints (a run folder or its checkpoints/)."""
    if path.is_dir() and (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if not path.exists():
        raise FileNotFoundError(f"resume={path}: no such checkpoint file or run folder")
    return path


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Hydra's entry point; returns the test loss (what a sweeper would minimise)."""
    metrics = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    print(
        f"step {metrics['step']}: test_accuracy={metrics['test_accuracy']:.4f} "
        f"test_loss={metrics['test_loss']:.4f} -> {HydraConfig.get().runtime.output_dir}"
    )
    return float(metrics["test_loss"])


if __name__ == "__main__":
    main()
