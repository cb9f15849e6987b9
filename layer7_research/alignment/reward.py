"""A reward model trained on preference pairs with the Bradley–Terry loss (Ouyang et al. 2022,
https://arxiv.org/abs/2203.02155; Bradley & Terry 1952).

Bradley–Terry models a comparison through a latent score per item:

    P(y_w ≻ y_l | x) = σ(r_φ(x, y_w) − r_φ(x, y_l)),      L_BT = −log σ(r_w − r_l)

so fitting r_φ is logistic regression on score *differences* (no intercept: only differences are
identified, adding a constant to r changes nothing). With a linear r = w·φ(x, y) it is exactly
``LogisticRegression(fit_intercept=False)`` on φ_w − φ_l, which the tests check.

:class:`RewardModel` is InstructGPT's recipe at our scale: a copy of the language model's trunk
(the GPT without its unembedding, so it emits the final hidden states (B, T, C)) and a scalar head
``w·h + b`` at every position. The reward of a whole sequence is the head at its last token,
the one position whose hidden state has read all of prompt and continuation (causal attention).
The per-position outputs serve PPO as a value function V(s_t) (initialised from the reward model,
as in InstructGPT). All sequences here have one length (fixed-length continuations), so the
last token is position T − 1.

:class:`RewardTask` is the loss as a layer-3 :class:`~layer3_framework.task.Task` on batches
``(chosen, rejected)`` of ids (B, T); its validation reports held-out pair accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.task import Logs, Sums, Task
from layer4_architectures.sequence.gpt import GPT
from layer7_research.alignment.logprobs import without_dropout


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(r_w − r_l) per pair (B,), as softplus(−(r_w − r_l)) (stable for any margin)."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"rewards of chosen {tuple(r_chosen.shape)} and rejected {tuple(r_rejected.shape)} "
            "must have one shape"
        )
    return -F.logsigmoid(r_chosen - r_rejected)


class RewardModel(nn.Module):
    """r(x) = w·h_T(x) + b: a copy of a GPT's trunk and a scalar head; forward -> (B, T)."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.backbone = without_dropout(gpt)
        self.backbone.lm_head = nn.Identity()  # the trunk's final (normed) hidden states
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)  # every reward starts at 0: no preference yet
        nn.init.zeros_(self.head.bias)
        self.head.to(next(self.backbone.parameters()).device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The head at every position of ids (B, T) -> (B, T)."""
        hidden = self.backbone(ids)  # (B, T, C)
        return self.head(hidden.float()).squeeze(-1)  # (B, T)

    def score(self, ids: torch.Tensor) -> torch.Tensor:
        """The reward of each whole sequence: the head at its last token -> (B,)."""
        return self(ids)[:, -1]


class RewardTask(Task):
    """Bradley–Terry loss of ``model.score`` on batches (chosen, rejected) of ids (B, T)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _losses(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, rejected = batch[0], batch[1]
        r = self.model.score(torch.cat([chosen, rejected]))  # (2B,): one forward for both
        r_w, r_l = r.chunk(2)
        return bradley_terry_loss(r_w, r_l), r_w - r_l

    def training_step(self, batch: Any, step: int, optimizer: str) -> tuple[torch.Tensor, Logs]:
        loss, margin = self._losses(batch)
        return loss.mean(), {"accuracy": (margin > 0).float().mean().detach()}

    def validation_step(self, batch: Any) -> Sums:
        loss, margin = self._losses(batch)
        n = margin.numel()
        return {"loss": (loss.sum().double(), n), "accuracy": ((margin > 0).sum(), n)}


@torch.no_grad()
def normalise_reward(model: RewardModel, ids: torch.Tensor, batch_size: int = 128) -> dict:
    """Rescale the head so the scores of ``ids`` (N, T) have mean 0 and std 1, as InstructGPT
    normalises its reward model before RL (a reward's offset and scale are not identified by
    Bradley–Terry, but PPO's KL trade-off depends on them); returns the mean and std before."""
    device = next(model.parameters()).device
    scores = torch.cat(
        [model.score(ids[i : i + batch_size].to(device)) for i in range(0, len(ids), batch_size)]
    )
    mean, std = scores.mean(), scores.std()
    if not std > 0:
        raise ValueError(f"reward scores have std {float(std)}: cannot normalise a constant")
    model.head.weight.div_(std)
    model.head.bias.sub_(mean).div_(std)
    return {"mean": float(mean), "std": float(std)}
