"""The one trainer: a training loop written once, carefully, for every model in layers 3-7.

What is trained is a :class:`~layer3_framework.task.Task` (the protocol is in :mod:`task`): it
turns a batch into ``loss, logs``; a plain ``nn.Module`` on ``(x, y)`` batches is wrapped in
:class:`~layer3_framework.task.Classification`. The trainer owns the rest.

Each optimizer *step* consumes ``grad_accum`` micro-batches. For micro-batch ``i`` the loss
``L_i`` is scaled by ``1/grad_accum`` before ``backward()``, so the accumulated gradient is the
gradient of the mean loss over the whole effective batch, ``∇ (1/A) Σ_i L_i``. Then, for each
optimizer that steps (in the task's order, see :meth:`Task.optimizer_order`): unscale, clip its
global gradient norm ``g ← g · min(1, c/‖g‖₂)``, step it, zero its gradients, step its LR
schedule; then the per-step hooks run (an :class:`~layer3_framework.ema.EMA`, sample loggers).

What makes it production-grade rather than a notebook loop:

- **Device-agnostic.** Batches (tensors nested in tuples, lists, dicts) move to ``device``.
- **Mixed precision, without branches.** The task runs under ``torch.autocast(device, dtype,
  enabled=precision != "fp32")``. ``bf16`` has fp32's 8 exponent bits, so needs no loss scaling;
  ``fp16`` (CUDA only) has 5, so small gradients underflow: a ``GradScaler`` multiplies the loss
  by ``S`` before backward, divides the gradients by ``S`` before the step, skips steps whose
  gradients overflowed and adapts ``S``. As in nanoGPT the scaler is built with
  ``enabled=(precision == "fp16")`` and called unconditionally: disabled, it is the identity.
- **torch.compile** as an option (``compile=True``): the task's submodules are compiled in place.
- **Few host-device syncs.** ``loss.item()`` forces the CPU to wait for the GPU. Losses and logs
  are summed on the device and read only every ``log_every`` steps (and before a checkpoint).
- **A non-finite loss stops the run** with a message naming the step range and the last good
  checkpoint; since the check happens before every save, a checkpoint never holds NaNs.
- **Exact resume.** A checkpoint stores the task, every optimizer, schedule, the scaler, the
  hooks' state (EMA weights), the data position (epoch, batches consumed) and every RNG state;
  :meth:`Trainer.resume` restores them, and the rest of the run is bit-for-bit the run that never
  stopped (on the same machine; tested on CPU). A resume refuses config changes that would alter
  the optimisation (:func:`~layer3_framework.checkpoint.check_resume_config`), a finished run,
  and damaged checkpoints (falling back to the previous good one).
- **The same loop under torchrun.** When a ``torch.distributed`` process group is initialised,
  every rank runs this trainer on its shard of each global batch (the loader shards,
  :mod:`layer3_framework.data`). The parameters start from rank 0's; before each optimizer
  step the accumulated gradients are averaged over the ``W`` ranks in one all-reduce,
  ``g ← (1/W) Σ_r g_r``, which is DDP's arithmetic (without its bucketing and overlap), so every
  rank takes the same step and the replicas stay equal. Logged means are averaged over ranks;
  only rank 0 shows progress, logs and writes checkpoints (the others wait for the file).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from layer3_framework.checkpoint import (
    ResumeError,
    check_resume_config,
    checkpoint_path,
    first_good_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    validate_model_spec,
)
from layer3_framework.data import ResumableSampler, rank_and_world
from layer3_framework.loggers import Logger
from layer3_framework.repro import rng_state, set_rng_state
from layer3_framework.task import Task, as_task, cross_entropy_loss

PRECISIONS = ("fp32", "bf16", "fp16")
Hook = Callable[["Trainer"], None]

__all__ = [
    "PRECISIONS",
    "NonFiniteLossError",
    "Trainer",
    "TrainerConfig",
    "cross_entropy_loss",
]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped."""


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


def _named(obj: Any, what: str) -> dict[str, Any]:
    """One object as ``{"main": obj}``, a mapping as a dict, None as ``{}``."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        if not obj:
            raise ValueError(f"the {what} mapping is empty")
        return dict(obj)
    return {"main": obj}


def _stored(named: dict[str, Any]) -> Any:
    """What a checkpoint stores: the one object as itself (the single-optimizer format), or the
    mapping."""
    if not named:
        return None
    return named["main"] if list(named) == ["main"] else named


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (nested in tuples, lists, dicts) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def batch_size(batch: Any) -> int:
    """The leading dimension of the first tensor in ``batch`` (0 if it holds none)."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    values = batch.values() if isinstance(batch, Mapping) else batch
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        for v in values:
            n = batch_size(v)
            if n:
                return n
    return 0


class _Sums:
    """Named scalars summed on the device, with host-side counts: read with one sync."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = device, dtype
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, Any] = {}

    def add(self, name: str, value: torch.Tensor, count: Any = 1) -> None:
        if name not in self.sums:  # float32 sums (float64 for float64 values, or if asked)
            dtype = torch.promote_types(self.dtype, value.dtype)
            self.sums[name] = torch.zeros((), device=self.device, dtype=dtype)
            self.counts[name] = 0
        self.sums[name] += value.detach()
        self.counts[name] = self.counts[name] + count

    def means(self, world: int = 1) -> dict[str, float]:
        """The window's means; with ``world > 1`` averaged over the ranks (equal counts)."""
        if not self.sums:
            return {}
        stacked = torch.stack(list(self.sums.values()))
        if world > 1:
            torch.distributed.all_reduce(stacked)
            stacked = stacked / world
        values = stacked.tolist()  # the one sync
        counts = [c.item() if isinstance(c, torch.Tensor) else c for c in self.counts.values()]
        return {k: v / c for k, v, c in zip(self.sums, values, counts, strict=True)}

    def clear(self) -> None:
        self.sums.clear()
        self.counts.clear()


class Trainer:
    """Trains ``task`` (a :class:`Task`, or a plain classifier on ``(x, y)`` batches) with
    ``optimizer`` (one, or ``{name: optimizer}``) on the batches of ``train_loader``.

    ``scheduler``: one LR schedule for the one optimizer, or ``{name: schedule}``. ``hooks``:
    callables run with the trainer after every step, in order (an :class:`EMA` is one; a hook
    with ``state_dict`` is checkpointed; one with ``use_for_eval`` and ``swapped()`` supplies the
    weights :meth:`evaluate` uses). ``model_spec``: ``{"target", "kwargs", "preprocessing"}`` of
    the task's served model, stored in every checkpoint for
    :func:`~layer3_framework.checkpoint.load_model`.
    """

    def __init__(
        self,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
        train_loader: Iterable,
        cfg: TrainerConfig,
        *,
        device: torch.device | str = "cpu",
        scheduler: Any = None,
        eval_loader: Iterable | None = None,
        logger: Logger | None = None,
        ckpt_dir: Path | None = None,
        run_config: dict[str, Any] | None = None,
        model_spec: dict[str, Any] | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.device = torch.device(device)
        self.task: Task = as_task(task).to(self.device)
        self.model = self.task.served_model()
        self.optimizers = _named(optimizer, "optimizer")
        self.optimizer = next(iter(self.optimizers.values()))
        self.schedulers = _named(scheduler, "scheduler")
        unknown = set(self.schedulers) - set(self.optimizers)
        if unknown:
            raise ValueError(f"schedulers {sorted(unknown)} name no optimizer")
        self.scheduler = _stored(self.schedulers)
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.cfg, self.logger, self.hooks = cfg, logger, list(hooks)
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.run_config = run_config or {}
        self.model_spec = self._full_spec(model_spec)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs CUDA (GradScaler); device is {self.device}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        if cfg.compile:
            for child in self.task.children():
                child.compile()
        self.step, self.epoch, self.position = 0, 0, 0  # position: batches consumed this epoch
        self.history: list[dict[str, float]] = []
        self.last_good_checkpoint: Path | None = None
        self.resume_changes: list[dict[str, Any]] = []  # what each resume changed, recorded
        self.samples_seen = 0
        self.train_seconds = 0.0
        self._window = _Sums(self.device)
        self._window_start = 0
        self.rank, self.world = rank_and_world()
        if self.world > 1:  # every replica starts from rank 0's weights
            for tensor in itertools.chain(self.task.parameters(), self.task.buffers()):
                torch.distributed.broadcast(tensor.data, src=0)

    def _full_spec(self, spec: dict[str, Any] | None) -> dict[str, Any] | None:
        if spec is None:
            return None
        return validate_model_spec({"state_prefix": self.task.model_key, **spec})

    # ------------------------------------------------------------------ helpers

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context (a no-op in fp32)."""
        dtype = torch.float16 if self.cfg.precision == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.cfg.precision != "fp32")

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

    # ------------------------------------------------------------------ one step

    def _micro_batches(self, batches: Iterator[Any], keep: list[Any]) -> Iterator[Any]:
        """The step's ``grad_accum`` micro-batches on the device, fetched one at a time (as
        they are used) and kept in ``keep`` for the step's later optimizers."""
        for _ in range(self.cfg.grad_accum):
            batch = move_to(next(batches), self.device)
            self.samples_seen += batch_size(batch)
            keep.append(batch)
            yield batch

    def _optimizers_now(self) -> list[str]:
        names = list(self.task.optimizer_order(self.step, tuple(self.optimizers)))
        unknown = [n for n in names if n not in self.optimizers]
        if unknown or not names:
            raise ValueError(
                f"{type(self.task).__name__}.optimizer_order({self.step}) gave {names}; "
                f"expected a non-empty list of {list(self.optimizers)}"
            )
        return names

    def _backward(self, name: str, micro: Iterable[Any]) -> None:
        """Accumulate the gradient of optimizer ``name``'s mean loss over the micro-batches."""
        for batch in micro:
            with self.autocast():
                loss, logs = self.task.training_step(batch, self.step, name)
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
            self._window.add(f"loss/{name}", loss)
            for key, value in logs.items():
                self._window.add(key, value)

    def _average_gradients(self, opt: torch.optim.Optimizer) -> None:
        """``g ← (1/W) Σ_r g_r`` for ``opt``'s parameters, as one flat all-reduce."""
        grads = [p.grad for group in opt.param_groups for p in group["params"]]
        grads = [g for g in grads if g is not None]
        if self.world == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.view_as(g))

    def _step_optimizer(self, name: str) -> None:
        opt = self.optimizers[name]
        self._average_gradients(opt)
        self.scaler.unscale_(opt)  # the identity unless fp16
        if self.cfg.clip_grad_norm is not None:
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad_norm)
        self.scaler.step(opt)
        opt.zero_grad(set_to_none=True)
        if name in self.schedulers:
            self.schedulers[name].step()

    def train_step(self, batches: Iterator[Any]) -> None:
        """One optimizer step of every optimizer the task names, then the hooks."""
        kept: list[Any] = []
        for i, name in enumerate(self._optimizers_now()):
            self.optimizers[name].zero_grad(set_to_none=True)
            self._backward(name, self._micro_batches(batches, kept) if i == 0 else kept)
            self._step_optimizer(name)
        self.scaler.update()
        self.step += 1
        for hook in self.hooks:
            hook(self)

    # ------------------------------------------------------------------ the loop

    def _progress_bar(self) -> Any:
        if not self.cfg.progress or self.rank != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.cfg.max_steps,
            initial=self.step,
            desc="train",
            leave=False,
            dynamic_ncols=True,
            disable=os.environ.get("DLSTACK_PROGRESS", "1") == "0",
        )

    def _due(self, every: int) -> bool:
        return self.step == self.cfg.max_steps or bool(every and self.step % every == 0)

    def _log_window(self, bar: Any) -> None:
        """Read the window's sums (the one sync), stop on a non-finite loss, log the means."""
        means = self._window.means(self.world)
        losses = {k.removeprefix("loss/"): v for k, v in means.items() if k.startswith("loss/")}
        total = math.fsum(losses.values()) if len(losses) > 1 else next(iter(losses.values()))
        if not all(math.isfinite(v) for v in losses.values()):
            bad = next(v for v in losses.values() if not math.isfinite(v))
            self._raise_nonfinite(bad, self._window_start + 1, self.step)
        record = {
            "train/loss": total,
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/epoch": self.epoch,
            "train/samples_per_sec": self.samples_seen * self.world / max(self.train_seconds, 1e-9),
        }
        if len(self.optimizers) > 1:
            record.update({f"train/loss/{k}": v for k, v in losses.items()})
            record.update(
                {f"train/lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()}
            )
        record.update({f"train/{k}": v for k, v in means.items() if not k.startswith("loss/")})
        self._log(record)
        if bar is not None:
            bar.set_postfix(loss=f"{total:.4f}")
        self._window.clear()
        self._window_start = self.step

    def _after_step(self, bar: Any, clock: float) -> float:
        """Log, evaluate and checkpoint when due; returns the restarted training clock (time
        spent evaluating and saving is not training time)."""
        cfg = self.cfg
        want_ckpt = self.ckpt_dir is not None and self._due(cfg.ckpt_every)
        if self.step % cfg.log_every == 0 or self.step == cfg.max_steps or want_ckpt:
            self.train_seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            self._log_window(bar)
        if self.eval_loader is not None and self._due(cfg.eval_every):
            self.train_seconds += time.perf_counter() - clock
            self._log({f"eval/{k}": v for k, v in self.evaluate().items()})
            clock = time.perf_counter()
        if want_ckpt:
            self.train_seconds += time.perf_counter() - clock
            self.save()
            clock = time.perf_counter()
        return clock

    def fit(self) -> dict[str, float]:
        """Train until ``max_steps``; return the final metrics."""
        batches = self._batches()
        self._window.clear()
        self._window_start = self.step
        bar = self._progress_bar()
        self.task.train()
        clock = time.perf_counter()
        try:
            while self.step < self.cfg.max_steps:
                self.train_step(batches)
                if bar is not None:
                    bar.update(1)
                clock = self._after_step(bar, clock)
        finally:
            if bar is not None:
                bar.close()
        final = {k: v for rec in self.history for k, v in rec.items()}
        final["train_seconds"] = self.train_seconds
        return final

    def _log(self, record: dict[str, float]) -> None:
        self.history.append({"step": self.step, **record})
        if self.logger is not None and self.rank == 0:
            self.logger.log_metrics(record, self.step)

    # ------------------------------------------------------------------ evaluation

    def eval_weights(self) -> contextlib.ExitStack:
        """The weights evaluation uses: the model's own, or those of a hook with
        ``use_for_eval`` (an EMA) swapped in for the block."""
        stack = contextlib.ExitStack()
        for hook in self.hooks:
            if getattr(hook, "use_for_eval", False):
                stack.enter_context(hook.swapped())
        return stack

    @torch.no_grad()
    def evaluate(self, loader: Iterable | None = None, max_batches: int | None = None) -> dict:
        """The task's validation metrics (Σ sums / Σ counts) on ``loader``: for a classifier,
        mean loss and accuracy over every target (per image, or per token)."""
        loader = self.eval_loader if loader is None else loader
        if loader is None:
            raise ValueError("no eval loader: pass one to Trainer(eval_loader=...) or evaluate()")
        max_batches = self.cfg.eval_batches if max_batches is None else max_batches
        was_training = self.task.training
        self.task.eval()
        sums = _Sums(self.device, torch.float64)
        with self.eval_weights():
            for batch in itertools.islice(loader, max_batches):
                with self.autocast():
                    out = self.task.validation_step(move_to(batch, self.device))
                for key, (value, count) in out.items():
                    sums.add(key, value, count)
        self.task.train(was_training)
        if not sums.sums:
            raise ValueError("the eval loader yielded no batches")
        return sums.means()

    # ------------------------------------------------------------------ checkpoints

    def _hook_states(self) -> dict[str, Any]:
        return {
            str(i): h.state_dict() for i, h in enumerate(self.hooks) if hasattr(h, "state_dict")
        }

    def save(self, path: Path | None = None) -> Path:
        """Checkpoint the run (after checking that the weights are finite)."""
        if path is None:
            if self.ckpt_dir is None:
                raise ValueError("no checkpoint path: pass one or set Trainer(ckpt_dir=...)")
            path = checkpoint_path(self.ckpt_dir, self.step)
        finite = torch.stack([p.detach().isfinite().all() for p in self.task.parameters()])
        if not bool(finite.all()):
            self._raise_nonfinite(float("nan"), self.step, self.step)
        if self.rank != 0:  # the replicas are equal: rank 0 writes, the others wait for it
            torch.distributed.barrier()
            self.last_good_checkpoint = path
            return path
        saved = self._write_checkpoint(path)
        if self.world > 1:
            torch.distributed.barrier()
        return saved

    def _write_checkpoint(self, path: Path) -> Path:
        saved = save_checkpoint(
            path,
            model=self.task,
            step=self.step,
            optimizer=_stored(self.optimizers),
            scheduler=self.scheduler,
            scaler=self.scaler,
            rng=rng_state(),
            data_state={"epoch": self.epoch, "position": self.position},
            config=self.run_config,
            model_spec=self.model_spec,
            states={"hooks": self._hook_states()},
            extra={
                "trainer": asdict(self.cfg),
                "samples_seen": self.samples_seen,
                "train_seconds": self.train_seconds,
                "resume_changes": self.resume_changes,
            },
        )
        self.last_good_checkpoint = saved
        if path.parent == self.ckpt_dir:
            prune_checkpoints(self.ckpt_dir, self.cfg.keep_checkpoints)
        return saved

    def _check_resumable(self, path: Path, meta: dict[str, Any], run_config: dict) -> dict:
        """The config changes this resume takes (or :class:`ResumeError`)."""
        step = int(meta["step"])
        if step >= self.cfg.max_steps:
            raise ResumeError(
                f"{path} is already finished at step {step} (trainer.max_steps="
                f"{self.cfg.max_steps}); raise trainer.max_steps to continue"
            )
        old, new = meta["config"] or {}, run_config
        if not old or not new:  # a Trainer used without a run config: compare its own fields
            old, new = {"trainer": meta["extra"].get("trainer", {})}, {"trainer": asdict(self.cfg)}
        return check_resume_config(old, new)

    def _load(self, path: Path, run_config: dict) -> tuple[dict[str, Any], dict]:
        """Load one checkpoint into the trainer's objects; the config changes it takes."""
        changes: dict[str, Any] = {}

        def check(meta: dict[str, Any]) -> None:
            changes.update(self._check_resumable(path, meta, run_config))
            missing = set(self._hook_states()) - set(meta["states"].get("hooks", {}))
            if missing:
                raise ResumeError(f"{path} holds no state for the hooks {sorted(missing)}")

        meta = load_checkpoint(
            path,
            model=self.task,
            optimizer=_stored(self.optimizers),
            scheduler=self.scheduler,
            scaler=self.scaler,
            check=check,
        )
        for i, hook in enumerate(self.hooks):
            if hasattr(hook, "load_state_dict"):
                hook.load_state_dict(meta["states"]["hooks"][str(i)])
        return meta, changes

    def resume(self, path: Path, run_config: dict[str, Any] | None = None) -> int:
        """Continue from a checkpoint file, or from the newest good one in a folder (skipping
        damaged ones with a warning); returns its step.

        ``run_config`` (default: the trainer's) is compared with the checkpoint's config: the
        changes :data:`~layer3_framework.checkpoint.RESUMABLE_CHANGES` allows are applied and
        recorded in :attr:`resume_changes` (and every later checkpoint); any other raises
        :class:`ResumeError` naming the keys, as does resuming a run already at ``max_steps``.
        """
        new = self.run_config if run_config is None else run_config
        path, (meta, changes) = first_good_checkpoint(Path(path), lambda p: self._load(p, new))
        self.step = int(meta["step"])
        self.epoch = int(meta["data"]["epoch"])
        self.position = int(meta["data"]["position"])
        self.samples_seen = int(meta["extra"].get("samples_seen", 0))
        self.train_seconds = float(meta["extra"].get("train_seconds", 0.0))
        self.resume_changes = [
            *meta["extra"].get("resume_changes", []),
            {"step": self.step, "from": str(path), "changes": changes},
        ]
        set_rng_state(meta["rng"])
        self.last_good_checkpoint = path
        return self.step
