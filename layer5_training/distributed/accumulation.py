"""Gradient accumulation: ``k`` micro-batches of ``b`` are one batch of ``k·b``.

For a loss that is a mean over the batch, splitting a batch of ``k·b`` samples into ``k``
micro-batches ``M_j`` of ``b`` and back-propagating each micro-batch's mean loss scaled by
``1/k`` sums to the full batch's gradient (gradients add in ``.grad``):

    Σ_j ∇ (1/k)(1/b) Σ_{i ∈ M_j} ℓ_i  =  ∇ (1/(k·b)) Σ_{i} ℓ_i

so a memory-bound run can take the optimisation steps of a bigger batch (activation memory of
``b``, the arithmetic of ``k·b``). The same identity is what lets data parallelism split a batch
over ranks (:mod:`reference`); with DDP the ``k − 1`` first micro-batches run under
``no_sync()`` so the gradients are all-reduced once per step, as the layer 3 trainer does it
(``trainer.grad_accum``: it scales each micro-batch's loss by ``1/grad_accum``, then averages
over ranks once, before the optimizer step). Layers with batch statistics (BatchNorm) break the
identity: their statistics are per micro-batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from layer3_framework.data import build_loader
from layer3_framework.trainer import Trainer, TrainerConfig
from layer5_training.distributed.reference import Problem, flat

__all__ = ["accumulated_gradient", "batch_gradient", "trainer_params"]


def batch_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ of the mean loss over the whole batch, flattened: (P,)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return flat([p.grad for p in model.parameters()])


def accumulated_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batches: int
) -> torch.Tensor:
    """The sum over ``micro_batches`` equal micro-batches of ∇ (mean loss / k): (P,)."""
    if micro_batches < 1 or x.shape[0] % micro_batches:
        raise ValueError(
            f"a batch of {x.shape[0]} cannot be split into {micro_batches} equal micro-batches"
        )
    model.zero_grad(set_to_none=True)
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches), strict=True):
        (F.cross_entropy(model(xs), ys) / micro_batches).backward()  # adds into .grad
    return flat([p.grad for p in model.parameters()])


def trainer_params(problem: Problem, batch_size: int, grad_accum: int) -> torch.Tensor:
    """The parameters after ``problem.steps`` steps of layer 3's :class:`Trainer` on
    ``problem``'s samples with micro-batches of ``batch_size`` and ``grad_accum`` of them per
    step (shuffled by the seed, so ``(b, k)`` and ``(k·b, 1)`` see the same samples): (P,)."""
    model = problem.build_model()
    loader = build_loader(
        TensorDataset(problem.x, problem.y),
        batch_size,
        shuffle=True,
        seed=problem.seed,
        drop_last=True,
    )
    cfg = TrainerConfig(
        max_steps=problem.steps, grad_accum=grad_accum, log_every=problem.steps, progress=False
    )
    trainer = Trainer(model, problem.make_optimizer(list(model.parameters())), loader, cfg)
    trainer.fit()
    return flat(list(model.parameters()))
