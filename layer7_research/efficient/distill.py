"""Knowledge distillation: a small student trained on a large teacher's softened predictions.

Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network"
(https://arxiv.org/abs/1503.02531). With logits z (student) and v (teacher) and a temperature T,
p_i = softmax(z/T)_i and q_i = softmax(v/T)_i; the student minimises

    L = α · T² · KL(q ‖ p) + (1 − α) · CE(z, y).

A high T softens q: the teacher's small probabilities for wrong classes ("a 2 that looks like a
7") become visible, and they carry most of what a one-hot label lacks ("dark knowledge").

**Why T².** ∂KL(q ‖ p)/∂z_i = (p_i − q_i) / T: the soft term's gradient shrinks as 1/T, and for
large T (with zero-mean logits, p_i ≈ (1 + z_i/T)/N) it is ≈ (z_i − v_i) / (N T²), matching
logits, shrinking as 1/T². Multiplying by T² keeps the soft term's gradient magnitude (roughly)
independent of T, so α sets the balance of the two terms whatever the temperature. α = 0 is plain
cross-entropy on the labels.

:class:`DistillationTask` is the task protocol of layer 3's trainer: the teacher (frozen, always
in eval mode) computes its logits for each training batch inside ``training_step`` (so they see the
same augmentation as the student); evaluation reports the student's loss and accuracy. Several
students taught by one teacher on the same batches (a sweep over T and α with one seed) may share
a :class:`TeacherCache`: the frozen teacher's logits are a function of the input alone, so each
distinct batch is run through the teacher once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework import Task
from layer3_framework.task import Logs, Sums


def _check(temperature: float, alpha: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature T={temperature}: expected T > 0")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha}: expected 0 <= alpha <= 1")


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Logits in float32 (from bf16/fp16 autocast), float64 kept."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² · KL(softmax(v/T) ‖ softmax(z/T)), averaged over the batch; logits (B, C)."""
    _check(temperature, 0.0)
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)}: expected the same shape (B, C)"
        )
    log_p = F.log_softmax(_at_least_fp32(student_logits) / temperature, dim=-1)  # (B, C) student
    log_q = F.log_softmax(_at_least_fp32(teacher_logits) / temperature, dim=-1)  # (B, C) teacher
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)  # (B,) KL(q ‖ p)
    return temperature**2 * kl.mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = α T² KL(q ‖ p) + (1 − α) CE(z, y); the loss and its two terms (detached)."""
    _check(temperature, alpha)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(_at_least_fp32(student_logits), targets)
    return alpha * soft + (1 - alpha) * hard, {"soft": soft.detach(), "hard": hard.detach()}


class TeacherCache:
    """Memoised logits of a frozen, eval-mode teacher, keyed by a hash of the input's bytes."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.logits: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0

    @staticmethod
    def key(x: torch.Tensor) -> bytes:
        data = x.detach().contiguous().cpu().numpy().tobytes()
        return hashlib.blake2b(data, digest_size=16).digest() + str(tuple(x.shape)).encode()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        k = self.key(x)
        if k in self.logits:
            self.hits += 1
        else:
            self.misses += 1
            self.logits[k] = self.teacher(x)
        return self.logits[k]


class DistillationTask(Task):
    """Train ``student`` on ``distillation_loss`` against a frozen ``teacher``.

    ``model_key = "student"``: the trainer's checkpoints rebuild the student. The teacher's
    parameters take no gradient and it stays in eval mode (BN uses its running statistics)
    whatever mode the task is put in.
    """

    model_key = "student"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.9,
        cache: TeacherCache | None = None,
    ) -> None:
        super().__init__()
        _check(temperature, alpha)
        if cache is not None and cache.teacher is not teacher:
            raise ValueError("the TeacherCache was built for another teacher")
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = temperature, alpha
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.cache = cache

    def train(self, mode: bool = True) -> DistillationTask:
        super().train(mode)
        self.teacher.eval()
        return self

    def training_step(
        self, batch: Any, step: int, optimizer: str = "main"
    ) -> tuple[torch.Tensor, Logs]:
        x, y = batch  # (B, C, H, W), (B,)
        with torch.no_grad():
            teacher_logits = self.cache(x) if self.cache else self.teacher(x)  # (B, classes)
        return distillation_loss(self.student(x), teacher_logits, y, self.temperature, self.alpha)

    def validation_step(self, batch: Any) -> Sums:
        x, y = batch
        logits = self.student(x).float()  # (B, classes)
        loss_sum = F.cross_entropy(logits, y, reduction="sum").double()
        correct = (logits.argmax(-1) == y).sum()
        return {"loss": (loss_sum, y.numel()), "accuracy": (correct, y.numel())}
