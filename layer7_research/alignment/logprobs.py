"""Log-probabilities of continuations under a causal language model, shared by DPO and PPO.

A sequence ``x = (x_1 … x_T)`` is a prompt ``x_{<P}`` followed by a continuation ``y = x_{≥P}``.
An autoregressive policy π factorises the continuation's probability token by token:

    log π(y | prompt) = Σ_{t ≥ P} log π(x_t | x_{<t}) = Σ_{t ≥ P} log_softmax(z_{t-1})[x_t]

where ``z_{t-1}`` are the logits the model emits at position t-1 (it predicts the next token).
:func:`token_logprobs` returns every term (B, T-1) (the term for target position ``t`` sits at
index ``t-1``), :func:`continuation_mask` keeps the continuation's terms (prompt tokens masked),
:func:`sequence_logprobs` sums them. DPO compares these sums under the policy and the reference;
PPO uses the per-token terms as its action log-probabilities.

:func:`token_kl` is the exact per-position KL(π(·|x_{<t}) ‖ π_ref(·|x_{<t})) over the whole
vocabulary (Σ_v p_v (log p_v − log q_v)), the low-variance way to measure how far a policy moved
on the states it visits; :func:`without_dropout` copies a GPT for alignment (a policy, or a
frozen reference) with dropout off, so that policy and reference log-probs are comparable.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from layer4_architectures.sequence.gpt import GPT


def token_logprobs(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """log π(x_t | x_{<t}) for t = 1 … T-1 of ids (B, T) -> (B, T-1) (fp32)."""
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"token_logprobs needs ids of shape (B, T >= 2), got {tuple(ids.shape)}")
    logits = model(ids[:, :-1]).float()  # (B, T-1, V): position t-1 predicts token t
    logp = F.log_softmax(logits, dim=-1)  # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)


def continuation_mask(prompt_len: int | torch.Tensor, seq_len: int) -> torch.Tensor:
    """Which of the T-1 next-token terms belong to the continuation: target t >= prompt_len.

    ``prompt_len`` is one int (every row's prompt has that many tokens) or (B,) ints; the mask
    is (1, T-1) or (B, T-1) bool, index ``t-1`` standing for target position ``t``.
    """
    lens = torch.as_tensor(prompt_len).reshape(-1, 1)  # (B or 1, 1)
    if bool((lens < 1).any()) or bool((lens >= seq_len).any()):
        raise ValueError(
            f"prompt_len {lens.flatten().tolist()} must be in [1, {seq_len - 1}] for sequences "
            f"of length {seq_len} (a non-empty prompt and a non-empty continuation)"
        )
    targets = torch.arange(1, seq_len)[None, :]  # (1, T-1): target positions 1 … T-1
    return targets >= lens


def sequence_logprobs(
    model: torch.nn.Module, ids: torch.Tensor, prompt_len: int | torch.Tensor
) -> torch.Tensor:
    """log π(y | prompt) = Σ over the continuation's tokens of log π(x_t | x_{<t}) -> (B,)."""
    terms = token_logprobs(model, ids)  # (B, T-1)
    mask = continuation_mask(prompt_len, ids.shape[1]).to(terms.device)
    return (terms * mask).sum(dim=-1)  # (B,)


def token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(z_p) ‖ softmax(z_q)) = Σ_v p_v (log p_v − log q_v) over the last dim."""
    if logits_p.shape != logits_q.shape:
        raise ValueError(
            f"token_kl needs logits of one shape, got {tuple(logits_p.shape)} and "
            f"{tuple(logits_q.shape)}"
        )
    logp = F.log_softmax(logits_p.float(), dim=-1)
    logq = F.log_softmax(logits_q.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1)


@torch.no_grad()
def sequence_kl(
    policy: torch.nn.Module, reference: torch.nn.Module, ids: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    """Σ over the continuation's positions of the exact KL(π(·|x_{<t}) ‖ π_ref(·|x_{<t})) on
    sequences ids (B, T) sampled from π: each row's value estimates KL(π(y|p) ‖ π_ref(y|p)) of
    whole continuations (its expectation over π's samples is exactly that KL) -> (B,)."""
    kl = token_kl(policy(ids[:, :-1]), reference(ids[:, :-1]))  # (B, T-1)
    return (kl * continuation_mask(prompt_len, ids.shape[1]).to(kl.device)).sum(dim=-1)


def without_dropout(model: GPT) -> GPT:
    """A copy of ``model`` (same weights, device) with dropout 0: a policy to fine-tune or a
    reference to freeze, whose log-probs do not depend on train/eval mode."""
    if not isinstance(model, GPT):
        raise ValueError(f"without_dropout expects a layer-4 GPT, got {type(model).__name__}")
    config = dataclasses.asdict(model.config) | {"dropout": 0.0}
    copy = GPT(**config)
    copy.load_state_dict(model.state_dict())
    return copy.to(next(model.parameters()).device)


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with gradients off (a reference policy or a reward model)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
