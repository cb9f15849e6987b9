"""The task protocol: what a model *does* with a batch, apart from how it is trained.

A :class:`Task` is an ``nn.Module`` that owns the model(s) and turns a batch into losses, as
Lightning's ``training_step`` and nanoGPT's ``logits, loss = model(X, Y)`` do. The one
:class:`~layer3_framework.trainer.Trainer` keeps everything else: devices (nested batches of
tuples/lists/dicts of tensors are moved for the task), precision (the task runs under autocast),
gradient accumulation, clipping, optimizers and schedules, EMA and hooks, logging, checkpoints,
resume and the non-finite stop. The protocol, which layers 4-7 write against::

    class MyTask(Task):
        model_key = "model"              # the submodule load_model rebuilds ("" : the task itself)

        def __init__(self, model):
            super().__init__()
            self.model = model

        def training_step(self, batch, step: int, optimizer: str) -> tuple[Tensor, dict]:
            # the loss that optimizer ``optimizer`` minimises at ``step``, and scalar logs
            x, y = batch
            logits = self.model(x)
            return F.cross_entropy(logits, y), {"aux": aux_loss.detach()}

        def validation_step(self, batch) -> dict[str, tuple[Tensor, int | Tensor]]:
            # name -> (sum over the batch, count); the trainer reports Σ sums / Σ counts
            return {"loss": (loss_sum, n), "accuracy": (correct, n)}

        def optimizer_order(self, step: int, names: Sequence[str]) -> Sequence[str]:
            return names                 # which optimizers step at ``step``, in order

**Training.** At each step the trainer asks ``optimizer_order(step, names)`` which optimizers step
(``names`` are the keys of the dict of optimizers given to the trainer; a single optimizer is
named ``"main"``). For each, in order, it zeroes that optimizer's gradients, calls
``training_step(batch, step, name)`` on each of the step's ``grad_accum`` micro-batches and
back-propagates ``loss / grad_accum`` (through the one ``GradScaler``), then unscales, clips that
optimizer's parameters, steps it and its scheduler. A later optimizer therefore sees the weights
an earlier one just updated, which is what a GAN needs (D then G on the same real batch); a GAN that
steps G every k steps returns ``("d", "g") if step % k == 0 else ("d",)``. Logs are scalar tensors
(detach them), summed on the device and averaged over each logging window as ``train/<name>``; the
loss is logged as ``train/loss`` (with several optimizers, the sum over them, plus
``train/loss/<optimizer>`` each). A VAE returns ``recon + kl`` and logs ``kl``; an MoE returns
``ce + α·aux`` and logs ``aux``; diffusion samples noise and timesteps inside ``training_step``.

**Random state.** The global Python/numpy/torch streams are checkpointed by the trainer. A task
that draws from its own ``torch.Generator`` returns the generator's state (a uint8 tensor) from
``get_extra_state`` and restores it in ``set_extra_state``; it then travels in the task's
``state_dict`` and so in every checkpoint (see :class:`tests` ``test_task.py``).

**Checkpoints.** The whole task's ``state_dict`` is checkpointed (so a GAN's discriminator resumes
too); ``model_key`` names the submodule that :func:`~layer3_framework.checkpoint.load_model`
rebuilds from the checkpoint's ``model_spec`` (a classifier, a GAN's generator).

:class:`Classification` is the standard task: cross-entropy over the last dimension of the
model's output (one class per image, or one per token for a language model) and the accuracy,
with float64 sums in evaluation. A plain ``nn.Module`` given to the trainer is wrapped in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Logs = dict[str, torch.Tensor]
Sums = dict[str, tuple[torch.Tensor, "int | torch.Tensor"]]


class Task(nn.Module):
    """Base class of a task; subclasses implement :meth:`training_step` and
    :meth:`validation_step` (see the module docstring for the protocol)."""

    model_key: str = "model"

    def training_step(self, batch: Any, step: int, optimizer: str) -> tuple[torch.Tensor, Logs]:
        """The loss optimizer ``optimizer`` minimises at ``step``, and detached scalar logs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement training_step")

    def validation_step(self, batch: Any) -> Sums:
        """``{name: (sum over the batch, count)}``; the trainer reports Σ sum / Σ count."""
        raise NotImplementedError(f"{type(self).__name__} does not implement validation_step")

    def optimizer_order(self, step: int, names: Sequence[str]) -> Sequence[str]:
        """The optimizers that step at ``step``, in order (default: all, in the given order)."""
        return names

    def served_model(self) -> nn.Module:
        """The submodule named by ``model_key`` (the task itself when it is ``""``)."""
        return self.get_submodule(self.model_key) if self.model_key else self


def cross_entropy_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for logits (..., C) and integer targets (...): classifiers and LMs."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


class Classification(Task):
    """Cross-entropy and accuracy over the last dimension: images per sample, LMs per token.

    Training minimises ``mean_i CE(logits_i, y_i)`` over every target ``i`` of the batch;
    evaluation sums ``CE`` (float64) and correct predictions over every target, so the reported
    loss and accuracy are exact means over the whole evaluation set, however it is batched.

    ``label_smoothing`` ε trains against ``(1-ε)·onehot(y) + ε/C`` (evaluation reports the plain
    CE); ``flip_tta`` evaluates images (B, C, H, W) on the mean of the logits of the image and
    of its horizontal mirror (test-time augmentation). Both are off by default.
    """

    def __init__(
        self, model: nn.Module, label_smoothing: float = 0.0, flip_tta: bool = False
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing={label_smoothing}: expected 0 <= eps < 1")
        self.model = model
        self.label_smoothing = label_smoothing
        self.flip_tta = flip_tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(
        self, batch: Any, step: int, optimizer: str = "main"
    ) -> tuple[torch.Tensor, Logs]:
        x, y = batch
        if self.label_smoothing:
            out = self.model(x)
            logits = out.reshape(-1, out.shape[-1]).float()
            return F.cross_entropy(logits, y.reshape(-1), label_smoothing=self.label_smoothing), {}
        return cross_entropy_loss(self.model(x), y), {}

    def validation_step(self, batch: Any) -> Sums:
        x, y = batch
        out = self.model(x)
        if self.flip_tta:
            if x.ndim != 4:
                raise ValueError(f"flip_tta needs images (B, C, H, W), got {tuple(x.shape)}")
            out = (out.float() + self.model(x.flip(-1)).float()) / 2
        # the metrics in fp32/fp64 whatever the forward's autocast precision
        with torch.autocast(out.device.type, enabled=False):
            logits = out.reshape(-1, out.shape[-1]).float()
            target = y.reshape(-1)
            loss_sum = F.cross_entropy(logits, target, reduction="sum").double()
            correct = (logits.argmax(-1) == target).sum()
        n = target.numel()
        return {"loss": (loss_sum, n), "accuracy": (correct, n)}


def as_task(task_or_model: nn.Module) -> Task:
    """A :class:`Task` as given, or a plain classifier wrapped in :class:`Classification`."""
    if isinstance(task_or_model, Task):
        return task_or_model
    if not isinstance(task_or_model, nn.Module):
        raise TypeError(f"expected a Task or an nn.Module, got {type(task_or_model).__name__}")
    return Classification(task_or_model)
