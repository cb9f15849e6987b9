"""DPO against the paper's formula in numpy, its gradient in closed form, continuation log-probs
against a per-prefix recomputation, and a bandit whose DPO optimum is known in closed form:
π* ∝ π_ref · exp(r/β), so training must recover the reward differences r_i − r_j."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax
from torch import nn

from layer3_framework import Trainer, TrainerConfig
from layer4_architectures.sequence.gpt import GPT
from layer7_research.alignment import (
    DPOTask,
    continuation_mask,
    dpo_loss,
    frozen,
    sequence_logprobs,
    token_logprobs,
    without_dropout,
)
from layer7_research.alignment.dpo import reference_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dpo_loss_matches_the_papers_formula_in_numpy():
    rng = np.random.default_rng(0)
    pw, pl, rw, rl = (rng.normal(-20, 5, 64) for _ in range(4))
    for beta in (0.05, 0.1, 0.5, 2.0):
        h = (pw - rw) - (pl - rl)
        expected = -np.log(expit(beta * h))
        got = dpo_loss(*(torch.tensor(a) for a in (pw, pl, rw, rl)), beta).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*(torch.tensor(a) for a in (pw, pl, rw, rl)), 0.0)


def test_dpo_gradient_is_minus_beta_sigmoid_of_minus_beta_h():
    rng = np.random.default_rng(1)
    beta = 0.3
    pw, pl = (torch.tensor(rng.normal(0, 3, 32), requires_grad=True) for _ in range(2))
    rw, rl = (torch.tensor(rng.normal(0, 3, 32)) for _ in range(2))
    dpo_loss(pw, pl, rw, rl, beta).sum().backward()
    h = ((pw - rw) - (pl - rl)).detach().numpy()
    dl_dh = -beta * expit(-beta * h)  # the closed form; ∂h/∂π_w = 1, ∂h/∂π_l = −1
    np.testing.assert_allclose(pw.grad.numpy(), dl_dh, rtol=1e-10)
    np.testing.assert_allclose(pl.grad.numpy(), -dl_dh, rtol=1e-10)


def tiny_gpt(vocab: int = 11, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.2)


def test_sequence_logprobs_sum_the_continuation_of_a_per_prefix_recomputation():
    model = frozen(tiny_gpt())
    ids = torch.randint(0, 11, (3, 9), generator=torch.Generator().manual_seed(2))
    prompt_len = torch.tensor([2, 4, 8])
    expected = np.zeros(3)
    for b in range(3):
        for t in range(int(prompt_len[b]), 9):  # each target re-predicted from its prefix alone
            logits = model(ids[b : b + 1, :t])[0, -1].double().numpy()
            expected[b] += log_softmax(logits)[ids[b, t]]
    got = sequence_logprobs(model, ids, prompt_len).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert token_logprobs(model, ids).shape == (3, 8)
    assert continuation_mask(3, 6).tolist() == [[False, False, True, True, True]]
    with pytest.raises(ValueError, match="prompt_len"):
        continuation_mask(6, 6)


def test_without_dropout_copies_weights_and_is_deterministic_in_train_mode():
    base = tiny_gpt()
    copy = without_dropout(base).train()
    ids = torch.randint(0, 11, (2, 8))
    assert torch.equal(copy(ids), copy(ids))  # no dropout even in train mode
    torch.testing.assert_close(copy(ids), base.eval()(ids))
    assert copy.config.dropout == 0.0 and base.config.dropout == 0.2


class Table(nn.Module):
    """A bandit as a language model: one prompt token, then one of K items; the policy is a
    table of K logits whatever the context -> (B, T, K)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*ids.shape, -1)


def bandit(k: int = 5):
    gen = torch.Generator().manual_seed(3)
    ref_logits = torch.randn(k, generator=gen, dtype=torch.float64)
    reward = torch.randn(k, generator=gen, dtype=torch.float64)
    return ref_logits, reward


def test_the_population_dpo_optimum_is_pi_ref_times_exp_reward_over_beta():
    """Minimise the expected DPO loss over all pairs, labelled with Bradley–Terry probabilities
    σ(r_i − r_j): the minimiser is π* ∝ π_ref exp(r/β) (Rafailov et al., Prop. 1 and eq. 4)."""
    ref_logits, reward = bandit()
    k, beta = len(reward), 0.5
    i, j = torch.triu_indices(k, k, 1)
    p_ij = torch.sigmoid(reward[i] - reward[j])  # P(i ≻ j) under Bradley–Terry
    policy = nn.Parameter(torch.zeros(k, dtype=torch.float64))
    ref_lp = torch.log_softmax(ref_logits, 0)
    opt = torch.optim.LBFGS([policy], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        lp = torch.log_softmax(policy, 0)
        i_wins = dpo_loss(lp[i], lp[j], ref_lp[i], ref_lp[j], beta)
        j_wins = dpo_loss(lp[j], lp[i], ref_lp[j], ref_lp[i], beta)
        loss = (p_ij * i_wins + (1 - p_ij) * j_wins).sum()
        loss.backward()
        return loss

    opt.step(closure)
    implied = beta * (torch.log_softmax(policy, 0) - ref_lp).detach()  # r̂ = β log π/π_ref
    torch.testing.assert_close(implied[i] - implied[j], reward[i] - reward[j], atol=1e-5, rtol=0)
    optimum = torch.softmax(ref_logits + reward / beta, 0)
    torch.testing.assert_close(torch.softmax(policy, 0).detach(), optimum, atol=1e-6, rtol=0)


def test_dpo_task_trained_by_layer3_recovers_bandit_reward_differences():
    """Sampled Bradley–Terry preferences, DPOTask + the one Trainer: the implied reward
    differences match the true ones within sampling error."""
    ref_logits, reward = bandit()
    k, beta, n = len(reward), 0.5, 20_000
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randint(0, k, (2, n), generator=gen)
    keep = a != b
    a, b = a[keep], b[keep]
    a_wins = torch.rand(len(a), generator=gen, dtype=torch.float64) < torch.sigmoid(
        reward[a] - reward[b]
    )
    w, l = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    seq = lambda item: torch.stack([torch.zeros_like(item), item], 1)  # noqa: E731  (prompt, y)
    ref = Table(ref_logits.float())
    batch = (seq(w), seq(l), reference_logprobs(ref, seq(w), 1), reference_logprobs(ref, seq(l), 1))
    policy = Table(ref_logits.float())
    task = DPOTask(policy, beta, prompt_len=1)
    cfg = TrainerConfig(max_steps=300, log_every=100, progress=False)
    Trainer(task, torch.optim.Adam(policy.parameters(), lr=0.05), [batch], cfg).fit()
    implied = beta * (torch.log_softmax(policy.logits, 0) - torch.log_softmax(ref.logits, 0))
    i, j = torch.triu_indices(k, k, 1)
    got = (implied[i] - implied[j]).detach().double()
    torch.testing.assert_close(got, reward[i] - reward[j], atol=0.15, rtol=0)


def test_dpo_task_starts_at_log_two():
    """π_θ = π_ref: every margin is 0 and the loss is −log σ(0) = log 2."""
    ref = frozen(without_dropout(tiny_gpt()))
    ids = torch.randint(0, 11, (2, 4, 10), generator=torch.Generator().manual_seed(5))
    ref_w, ref_l = (reference_logprobs(ref, x, 3) for x in ids)
    task = DPOTask(without_dropout(tiny_gpt()), 0.1, prompt_len=3).train()
    loss, logs = task.training_step((ids[0], ids[1], ref_w, ref_l), 0, "main")
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    assert logs["reward_margin"].item() == pytest.approx(0.0, abs=1e-6)
