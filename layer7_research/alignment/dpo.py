"""Direct Preference Optimization (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290).

RLHF maximises reward under a KL leash, ``max_π E_{y~π}[r(x, y)] − β KL(π(·|x) ‖ π_ref(·|x))``,
whose optimum is known in closed form:

    π*(y|x) = π_ref(y|x) exp(r(x, y) / β) / Z(x)
    ⇔  r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x)

Put that reward into the Bradley–Terry model of preferences, P(y_w ≻ y_l | x) = σ(r_w − r_l):
the partition function Z(x) cancels, and the reward-model likelihood becomes a loss on the policy
itself, with no reward model and no sampling:

    h = (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))
    L_DPO = −log σ(β h),        ∂L/∂h = −β σ(−β h)

The gradient weights each pair by σ(−βh): pairs the implicit reward r̂ = β log π_θ/π_ref already
orders correctly (h ≫ 0) stop pulling. Log-probabilities are of whole continuations, prompt
tokens masked (:func:`~layer7_research.alignment.logprobs.sequence_logprobs`); the reference's are
computed once (:func:`reference_logprobs`) since π_ref is frozen.

:class:`DPOTask` is the loss as a layer-3 :class:`~layer3_framework.task.Task`, so layer 3's one
``Trainer`` does the optimisation; a batch is ``(chosen, rejected, ref_chosen, ref_rejected)``
with ids (B, T) and the reference's log-probs (B,).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from layer3_framework.task import Logs, Sums, Task
from layer7_research.alignment.logprobs import sequence_logprobs
from layer7_research.alignment.preferences import PreferencePairs


def log_ratio_margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
) -> torch.Tensor:
    """h = (log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l)), per pair."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """−log σ(β h) per pair (B,), written as softplus(−βh) so it is stable for any h."""
    if not beta > 0:
        raise ValueError(f"DPO's beta must be > 0, got {beta}")
    h = log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(beta * h)


@torch.no_grad()
def reference_logprobs(
    reference: torch.nn.Module, ids: torch.Tensor, prompt_len: int, batch_size: int = 128
) -> torch.Tensor:
    """log π_ref(y | prompt) of every row of ids (N, T), in batches -> (N,) on the CPU."""
    device = next(reference.parameters()).device
    parts = [
        sequence_logprobs(reference, ids[i : i + batch_size].to(device), prompt_len).cpu()
        for i in range(0, len(ids), batch_size)
    ]
    return torch.cat(parts)


def pair_dataset(pairs: PreferencePairs, reference: torch.nn.Module) -> TensorDataset:
    """(chosen, rejected, log π_ref(y_w), log π_ref(y_l)) rows: what :class:`DPOTask` trains on."""
    ref_w = reference_logprobs(reference, pairs.chosen, pairs.prompt_len)
    ref_l = reference_logprobs(reference, pairs.rejected, pairs.prompt_len)
    return TensorDataset(pairs.chosen, pairs.rejected, ref_w, ref_l)


class DPOTask(Task):
    """The DPO loss of ``policy`` on batches (chosen, rejected, ref_chosen, ref_rejected)."""

    model_key = "policy"

    def __init__(self, policy: torch.nn.Module, beta: float, prompt_len: int) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"DPO's beta must be > 0, got {beta}")
        self.policy, self.beta, self.prompt_len = policy, beta, prompt_len

    def _margins(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, rejected, ref_w, ref_l = batch
        ids = torch.cat([chosen, rejected])  # (2B, T): one forward for both sides
        logp = sequence_logprobs(self.policy, ids, self.prompt_len)  # (2B,)
        pol_w, pol_l = logp.chunk(2)
        h = log_ratio_margin(pol_w, pol_l, ref_w, ref_l)  # (B,)
        return dpo_loss(pol_w, pol_l, ref_w, ref_l, self.beta), h

    def training_step(self, batch: Any, step: int, optimizer: str) -> tuple[torch.Tensor, Logs]:
        loss, h = self._margins(batch)
        logs = {
            "reward_accuracy": (h > 0).float().mean().detach(),  # r̂_w > r̂_l
            "reward_margin": (self.beta * h).mean().detach(),  # r̂_w − r̂_l
        }
        return loss.mean(), logs

    def validation_step(self, batch: Any) -> Sums:
        loss, h = self._margins(batch)
        n = h.numel()
        return {"loss": (loss.sum().double(), n), "reward_accuracy": ((h > 0).sum(), n)}
