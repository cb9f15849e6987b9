"""Alignment of layer 4's TinyStories GPT to a checkable preference rule: DPO and RLHF (PPO).

- :mod:`.preferences`: the rule (a positivity lexicon count), prompts from held-out text, pairs of
  sampled continuations labelled by the rule, and the :class:`~.preferences.Judge` (win-rate vs
  the reference, mean rule score, KL to the reference) every deliverable measures with;
- :mod:`.logprobs`: log π(y | prompt) of continuations (prompt masked), exact per-token KL;
- :mod:`.dpo`: −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]);
- :mod:`.reward`: the Bradley–Terry reward model (GPT trunk + scalar head on the last token);
- :mod:`.ppo`: PPO with a value function, GAE, the clipped surrogate and a per-token KL penalty.
"""

from layer7_research.alignment.dpo import DPOTask, dpo_loss, log_ratio_margin, pair_dataset
from layer7_research.alignment.logprobs import (
    continuation_mask,
    frozen,
    sequence_kl,
    sequence_logprobs,
    token_kl,
    token_logprobs,
    without_dropout,
)
from layer7_research.alignment.ppo import (
    PPOConfig,
    Rollout,
    clipped_surrogate_loss,
    gae,
    kl_k1,
    kl_k3,
    ppo_update,
    rollout,
)
from layer7_research.alignment.preferences import (
    NEGATIVE,
    POSITIVE,
    Judge,
    PreferencePairs,
    make_pairs,
    positivity,
    prompts_from_text,
    split_prompts,
    win_rate,
)
from layer7_research.alignment.reward import (
    RewardModel,
    RewardTask,
    bradley_terry_loss,
    normalise_reward,
)

__all__ = [
    "NEGATIVE",
    "POSITIVE",
    "DPOTask",
    "Judge",
    "PPOConfig",
    "PreferencePairs",
    "RewardModel",
    "RewardTask",
    "Rollout",
    "bradley_terry_loss",
    "clipped_surrogate_loss",
    "continuation_mask",
    "dpo_loss",
    "frozen",
    "gae",
    "kl_k1",
    "kl_k3",
    "log_ratio_margin",
    "make_pairs",
    "normalise_reward",
    "pair_dataset",
    "positivity",
    "ppo_update",
    "prompts_from_text",
    "rollout",
    "sequence_kl",
    "sequence_logprobs",
    "split_prompts",
    "token_kl",
    "token_logprobs",
    "win_rate",
    "without_dropout",
]
