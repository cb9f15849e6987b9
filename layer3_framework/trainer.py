"""The one trainer: a training loop written once, carefully, for every model in layers 3-7.

Each optimizer *step* consumes ``grad_accum`` micro-batches. For micro-batch ``i`` the loss
``L_i`` is scaled by ``1/grad_accum`` before ``backward()``, so the accumulated gradient is the
gradient of the mean loss over the whole effective batch, ``∇ (1/A) Σ_i L_i``. Then, in order:
unscale (fp16 only), clip the global gradient norm ``g ← g · min(1, c/‖g‖₂)``, step the optimizer,
zero the gradients, step the LR schedule.

What makes it production-grade rather than a notebook loop:

- **Device-agnostic.** Batches move to ``device``; nothing else names a device.
- **Mixed precision.** ``precision="bf16"`` runs the forward pass under ``torch.autocast`` in
  bfloat16 (8 exponent bits like fp32, so no loss scaling is needed). ``"fp16"`` (CUDA only) has
  5 exponent bits, so small gradients underflow: a ``GradScaler`` multiplies the loss by ``S``
  before backward, divides the gradients by ``S`` before the step, skips steps whose gradients
  overflowed, and adapts ``S``.
- **torch.compile** as an option (``compile=True``): the same parameters, a compiled forward.
- **Few host-device syncs.** ``loss.item()`` forces the CPU to wait for the GPU. The loss is
  summed on the device and read only every ``log_every`` steps (and before a checkpoint).
- **A non-finite loss stops the run** with a message naming the step range and the last good
  checkpoint; since the check happens before every save, a checkpoint never holds NaNs.
- **Exact resume.** A checkpoint stores the data position (epoch, batches consumed) and every RNG
  state; :meth:`Trainer.resume` restores them, and the rest of the run is bit-for-bit the run that
  never stopped (on the same machine; tested on CPU).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from layer3_framework.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from layer3_framework.data import ResumableSampler
from layer3_framework.loggers import Logger
from layer3_framework.repro import rng_state, set_rng_state

PRECISIONS = ("fp32", "bf16", "fp16")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped."""


def cross_entropy_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for logits (..., C) and integer targets (...): classifiers and LMs."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


@dataclass
class TrainerConfig:
    """The ``trainer`` config group."""

    max_steps: int = 1000
    grad_accum: int = 1
    clip_grad_norm: float | None = None
    precision: str = "fp32"
    compile: bool = False
    log_every: int = 50
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int | None = None  # None: the whole eval set
    ckpt_every: int = 0  # 0: checkpoint only at the end
    keep_checkpoints: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        for key in ("max_steps", "grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("eval_every", "ckpt_every"):
            if getattr(self, key) < 0:
                raise ValueError(f"trainer.{key} must be >= 0, got {getattr(self, key)}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(
                f"trainer.clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}"
            )


class Trainer:
    """Trains ``model`` with ``optimizer`` on batches ``(x, y)`` from ``train_loader``."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable,
        cfg: TrainerConfig,
        *,
        device: torch.device | str = "cpu",
        loss_fn: LossFn = cross_entropy_loss,
        scheduler: Any = None,
        eval_loader: Iterable | None = None,
        logger: Logger | None = None,
        ckpt_dir: Path | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.cfg, self.loss_fn, self.logger = cfg, loss_fn, logger
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.run_config = run_config or {}
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs CUDA (GradScaler); device is {self.device}")
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.forward = torch.compile(model) if cfg.compile else model
        self.step, self.epoch, self.position = 0, 0, 0  # position: batches consumed this epoch
        self.history: list[dict[str, float]] = []
        self.last_good_checkpoint: Path | None = None
        self.samples_seen = 0
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ helpers

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context."""
        if self.cfg.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _batches(self) -> Iterator[Any]:
        """Micro-batches forever, epoch after epoch, starting at (epoch, position)."""
        loader = self.train_loader
        sampler = getattr(loader, "sampler", None)
        while True:
            skip = self.position
            if isinstance(sampler, ResumableSampler):
                sampler.set_epoch(self.epoch, offset=self.position * loader.batch_size)
                generator = getattr(loader, "generator", None)
                if generator is not None:  # worker seeds become a function of (seed, epoch)
                    generator.manual_seed(sampler.seed + self.epoch)
                skip = 0
            dataset = getattr(loader, "dataset", None)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(self.epoch)
            yielded = False
            for batch in itertools.islice(loader, skip, None):
                yielded = True
                self.position += 1
                yield batch
            if not yielded and self.position == 0:
                raise ValueError(
                    "the train loader yielded no batches in a whole epoch "
                    "(dataset smaller than one batch with drop_last?)"
                )
            self.epoch, self.position = self.epoch + 1, 0

    def _to_device(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def _raise_nonfinite(self, value: float, first: int, last: int) -> None:
        where = (
            f"the last good checkpoint is {self.last_good_checkpoint}"
            if self.last_good_checkpoint
            else "no checkpoint had been written"
        )
        raise NonFiniteLossError(
            f"training loss became non-finite ({value}) between steps {first} and {last}; "
            f"stopping. {where}. Lower the learning rate, clip gradients "
            "(trainer.clip_grad_norm) or check the data for NaN/inf."
        )

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        """Train until ``max_steps``; return the final metrics."""
        cfg = self.cfg
        batches = self._batches()
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        window_start, window_steps = self.step, 0
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=cfg.max_steps,
                initial=self.step,
                desc="train",
                leave=False,
                dynamic_ncols=True,
                disable=os.environ.get("DLSTACK_PROGRESS", "1") == "0",
            )
        self.model.train()
        t0 = time.perf_counter()
        while self.step < cfg.max_steps:
            for _ in range(cfg.grad_accum):
                x, y = self._to_device(next(batches))
                with self.autocast():
                    loss = self.loss_fn(self.forward(x), y)
                scaled = loss / cfg.grad_accum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                loss_sum += loss.detach()
                self.samples_seen += x.shape[0]
            if cfg.clip_grad_norm is not None:
                if self.scaler:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            window_steps += 1
            if bar is not None:
                bar.update(1)

            last = self.step == cfg.max_steps
            want_ckpt = self.ckpt_dir is not None and (
                last or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0)
            )
            if self.step % cfg.log_every == 0 or last or want_ckpt:
                mean_loss = loss_sum.item() / (window_steps * cfg.grad_accum)  # the one sync
                if not math.isfinite(mean_loss):
                    self._raise_nonfinite(mean_loss, window_start + 1, self.step)
                self.train_seconds += time.perf_counter() - t0
                record = {
                    "train/loss": mean_loss,
                    "train/lr": self.optimizer.param_groups[0]["lr"],
                    "train/epoch": self.epoch,
                    "train/samples_per_sec": self.samples_seen / max(self.train_seconds, 1e-9),
                }
                self._log(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                loss_sum.zero_()
                window_start, window_steps = self.step, 0
                t0 = time.perf_counter()
            if self.eval_loader is not None and (
                last or (cfg.eval_every and self.step % cfg.eval_every == 0)
            ):
                self.train_seconds += time.perf_counter() - t0
                self._log({f"eval/{k}": v for k, v in self.evaluate().items()})
                t0 = time.perf_counter()
            if want_ckpt:
                self.train_seconds += time.perf_counter() - t0
                self.save()
                t0 = time.perf_counter()
        if bar is not None:
            bar.close()
        final = {k: v for rec in self.history for k, v in rec.items()}
        final["train_seconds"] = self.train_seconds
        return final

    def _log(self, record: dict[str, float]) -> None:
        self.history.append({"step": self.step, **record})
        if self.logger is not None:
            self.logger.log_metrics(record, self.step)

    @torch.no_grad()
    def evaluate(self, loader: Iterable | None = None, max_batches: int | None = None) -> dict:
        """Mean loss and accuracy (over every target: per image, or per token) on ``loader``."""
        loader = self.eval_loader if loader is None else loader
        if loader is None:
            raise ValueError("no eval loader: pass one to Trainer(eval_loader=...) or evaluate()")
        max_batches = self.cfg.eval_batches if max_batches is None else max_batches
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        count = 0
        for batch in itertools.islice(loader, max_batches):
            x, y = self._to_device(batch)
            with self.autocast():
                out = self.forward(x)
            logits = out.reshape(-1, out.shape[-1]).float()
            target = y.reshape(-1)
            loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
            correct += (logits.argmax(-1) == target).sum()
            count += target.numel()
        self.model.train(was_training)
        if count == 0:
            raise ValueError("the eval loader yielded no batches")
        return {"loss": loss_sum.item() / count, "accuracy": correct.item() / count}

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path | None = None) -> Path:
        """Checkpoint the run (after checking that the weights are finite)."""
        if path is None:
            if self.ckpt_dir is None:
                raise ValueError("no checkpoint path: pass one or set Trainer(ckpt_dir=...)")
            path = checkpoint_path(self.ckpt_dir, self.step)
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()])
        if not bool(finite.all()):
            self._raise_nonfinite(float("nan"), self.step, self.step)
        saved = save_checkpoint(
            path,
            model=self.model,
            step=self.step,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            rng=rng_state(),
            data_state={"epoch": self.epoch, "position": self.position},
            config=self.run_config,
            extra={
                "trainer": asdict(self.cfg),
                "samples_seen": self.samples_seen,
                "train_seconds": self.train_seconds,
            },
        )
        self.last_good_checkpoint = saved
        if path.parent == self.ckpt_dir:
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        return saved

    def resume(self, path: Path) -> int:
        """Continue from a checkpoint file, or from the newest one in a folder; returns its step."""
        path = Path(path)
        if path.is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"no complete checkpoint in {path}")
            path = found
        meta = load_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
        )
        self.step = int(meta["step"])
        self.epoch = int(meta["data"]["epoch"])
        self.position = int(meta["data"]["position"])
        self.samples_seen = int(meta["extra"].get("samples_seen", 0))
        self.train_seconds = float(meta["extra"].get("train_seconds", 0.0))
        set_rng_state(meta["rng"])
        self.last_good_checkpoint = path
        return self.step
