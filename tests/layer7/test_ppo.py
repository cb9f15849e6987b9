"""PPO's pieces against independent computations: GAE against a direct numpy recursion and its
λ = 0 / λ = 1 closed forms; the clipped surrogate on hand-computed cases (ratio inside and outside
[1 − ε, 1 + ε], both signs of the advantage) and its zero gradient where clipped; the k1/k3 KL
estimators and the sequence KL against exact KLs of small categoricals (enumerated); a rollout's
rewards rebuilt by hand; and PPO raising a known reward on a tiny GPT."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from torch import nn

from layer0_math.information import kl_divergence
from layer0_math.lab import latest_run_dir, run_deliverable
from layer4_architectures.sequence.gpt import GPT
from layer7_research.alignment import (
    PPOConfig,
    RewardModel,
    clipped_surrogate_loss,
    frozen,
    gae,
    kl_k1,
    kl_k3,
    ppo_update,
    preferences,
    rollout,
    sequence_kl,
    without_dropout,
)
from layer7_research.deliverables.dpo import dpo
from layer7_research.deliverables.rlhf import rlhf

pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_gae(r: np.ndarray, v: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Â_t = Σ_{l ≥ 0} (γλ)^l δ_{t+l}, summed directly (no recursion), V(s_C) = 0."""
    b, c = r.shape
    v_next = np.concatenate([v[:, 1:], np.zeros((b, 1))], axis=1)
    delta = r + gamma * v_next - v
    adv = np.zeros_like(r)
    for t in range(c):
        for k in range(t, c):
            adv[:, t] += (gamma * lam) ** (k - t) * delta[:, k]
    return adv


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.7), (0.99, 0.0), (0.8, 1.0)])
def test_gae_matches_the_direct_sum(gamma, lam):
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    adv, ret = gae(torch.tensor(r), torch.tensor(v), gamma, lam)
    np.testing.assert_allclose(adv.numpy(), numpy_gae(r, v, gamma, lam), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret.numpy(), adv.numpy() + v, rtol=1e-12)


def test_gae_closed_forms_at_lambda_zero_and_one():
    rng = np.random.default_rng(1)
    r, v, gamma = rng.normal(size=(3, 6)), rng.normal(size=(3, 6)), 0.9
    v_next = np.concatenate([v[:, 1:], np.zeros((3, 1))], axis=1)
    adv0, _ = gae(torch.tensor(r), torch.tensor(v), gamma, 0.0)
    np.testing.assert_allclose(adv0.numpy(), r + gamma * v_next - v, rtol=1e-12)  # one-step TD
    discounts = gamma ** np.arange(6)
    mc = np.stack([(r[:, t:] * discounts[: 6 - t]).sum(1) for t in range(6)], 1)
    adv1, ret1 = gae(torch.tensor(r), torch.tensor(v), gamma, 1.0)
    np.testing.assert_allclose(adv1.numpy(), mc - v, rtol=1e-12, atol=1e-12)  # MC return − V
    np.testing.assert_allclose(ret1.numpy(), mc, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="must match"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), 1.0, 1.0)


@pytest.mark.parametrize(
    ("ratio", "adv", "objective", "has_grad"),
    [
        (1.1, 2.0, 1.1 * 2.0, True),  # inside [0.8, 1.2]: the plain ratio
        (1.5, 2.0, 1.2 * 2.0, False),  # above 1 + ε with Â > 0: clipped, no gradient
        (0.5, 2.0, 0.5 * 2.0, True),  # below 1 − ε with Â > 0: the unclipped is smaller
        (1.5, -2.0, 1.5 * -2.0, True),  # above 1 + ε with Â < 0: the unclipped is smaller
        (0.5, -2.0, 0.8 * -2.0, False),  # below 1 − ε with Â < 0: clipped, no gradient
        (0.9, -1.0, 0.9 * -1.0, True),
    ],
)
def test_clipped_surrogate_by_hand(ratio, adv, objective, has_grad):
    logp_old = torch.tensor([-1.3], dtype=torch.float64)
    logp = (logp_old + np.log(ratio)).clone().requires_grad_(True)
    loss = clipped_surrogate_loss(logp, logp_old, torch.tensor([adv], dtype=torch.float64), 0.2)
    assert loss.item() == pytest.approx(-objective, rel=1e-12)
    loss.backward()
    # d(−ρÂ)/d log π = −ρÂ where the unclipped term is active, 0 where the clip is
    assert logp.grad.item() == pytest.approx(-ratio * adv if has_grad else 0.0, rel=1e-12)


def test_kl_estimators_are_unbiased_for_small_categoricals():
    rng = np.random.default_rng(2)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        exact = float(kl_divergence(p, q))
        lp, lq = torch.tensor(np.log(p)), torch.tensor(np.log(q))
        k1, k3 = kl_k1(lp, lq).numpy(), kl_k3(lp, lq).numpy()
        assert (p * k1).sum() == pytest.approx(exact, rel=1e-10)  # E_p[k1] = KL(p‖q)
        assert (p * k3).sum() == pytest.approx(exact, rel=1e-10)  # E_p[k3] = KL(p‖q)
        assert (k3 >= 0).all() and (k1 < 0).any()
        draws = rng.choice(6, size=200_000, p=p)
        assert k3[draws].mean() == pytest.approx(exact, abs=0.02)


def tiny_gpt(vocab: int = 3, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return frozen(GPT(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=16))


def test_sequence_kl_is_unbiased_for_the_kl_of_whole_continuations():
    """Enumerate all 3² continuations: E_{y~π}[sequence_kl(y)] = Σ_y π(y) log π(y)/π_ref(y)."""
    pol, ref = tiny_gpt(seed=1), tiny_gpt(seed=2)
    prompt = [1, 0]
    ys = [list(y) for y in itertools.product(range(3), repeat=2)]
    ids = torch.tensor([prompt + y for y in ys])  # (9, 4)

    def seq_logprob(model, row):
        logits = model(ids[row : row + 1, :-1])[0].double().numpy()  # (3, V)
        lp = log_softmax(logits, axis=-1)
        return lp[1, ids[row, 2]] + lp[2, ids[row, 3]]

    lp_pol = np.array([seq_logprob(pol, i) for i in range(9)])
    lp_ref = np.array([seq_logprob(ref, i) for i in range(9)])
    assert np.exp(lp_pol).sum() == pytest.approx(1.0, abs=1e-6)
    exact = float(kl_divergence(np.exp(lp_pol), np.exp(lp_ref)))
    estimate = sequence_kl(pol, ref, ids, 2).double().numpy()
    assert (np.exp(lp_pol) * estimate).sum() == pytest.approx(exact, rel=1e-4)


class TokenCount(nn.Module):
    """A known reward: how many continuation tokens equal ``token``."""

    def __init__(self, token: int, prompt_len: int) -> None:
        super().__init__()
        self.token, self.prompt_len = token, prompt_len

    def score(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids[:, self.prompt_len :] == self.token).float().sum(-1)


def setup(vocab: int = 5, seed: int = 0):
    base = tiny_gpt(vocab, seed)
    policy, reference = without_dropout(base), frozen(without_dropout(base))
    value = RewardModel(base)
    prompts = torch.randint(0, vocab, (32, 3), generator=torch.Generator().manual_seed(seed))
    return policy, reference, value, prompts


@torch.no_grad()
def test_rollout_rewards_are_the_kl_penalty_plus_the_score_at_the_last_token():
    policy, reference, value, prompts = setup()
    policy.tok_emb.weight.data += 0.3 * torch.randn_like(policy.tok_emb.weight)  # π ≠ π_ref
    cfg = PPOConfig(continuation_tokens=6, kl_coef=0.2, gamma=0.95, lam=0.9)
    ro = rollout(policy, reference, value, TokenCount(2, 3), prompts, cfg, seed=1)
    assert ro.ids.shape == (32, 9) and torch.equal(ro.ids[:, :3], prompts)
    # rebuild by hand: per-token log-probs of both models from their logits at positions 2..7
    lp = torch.log_softmax(policy(ro.ids[:, :-1]), -1)[:, 2:].gather(-1, ro.ids[:, 3:, None])
    lq = torch.log_softmax(reference(ro.ids[:, :-1]), -1)[:, 2:].gather(-1, ro.ids[:, 3:, None])
    rewards = -0.2 * (lp - lq).squeeze(-1)
    rewards[:, -1] += (ro.ids[:, 3:] == 2).float().sum(-1)
    values = value(ro.ids)[:, 2:8]  # V(s_t) read at each state's last token
    expected = numpy_gae(rewards.double().numpy(), values.double().numpy(), 0.95, 0.9)
    np.testing.assert_allclose(ro.advantages.numpy(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ro.kl, (lp - lq).squeeze(-1).sum(-1))


def test_ppo_raises_a_known_reward():
    policy, reference, value, prompts = setup()
    reward = TokenCount(2, 3)
    cfg = PPOConfig(continuation_tokens=6, kl_coef=0.01, epochs=4, minibatch=16)
    params = list(policy.parameters()) + list(value.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    scores = []
    for it in range(10):
        ro = rollout(policy, reference, value, reward, prompts, cfg, seed=it)
        logs = ppo_update(policy, value, opt, ro, cfg, gen)
        scores.append(ro.score.mean().item())
    # 6 tokens of 5 start near 6/5 = 1.2 expected; PPO drives it towards 6
    assert scores[0] < 2.0 and np.mean(scores[-3:]) > 4.5, scores
    assert 0.0 <= logs["clip_fraction"] <= 1.0


def fake_gpt_run(runs: Path) -> None:
    """A finished layer-4 ``gpt_tinystories`` run holding a tiny char-level GPT checkpoint."""
    from layer0_math.datasets import load
    from layer3_framework.checkpoint import checkpoint_path, save_checkpoint
    from layer4_architectures.sequence.data import CharTokenizer

    tok = CharTokenizer.train(load("tinystories"))
    kwargs = {"vocab_size": tok.vocab_size, "block_size": 32, "n_layer": 1, "n_head": 2,
              "n_embd": 16}  # fmt: skip
    run = runs / "layer4_architectures" / "gpt_tinystories" / "20260101-000000-000000"
    spec = {
        "target": "layer4_architectures.sequence.gpt.GPT",
        "kwargs": kwargs,
        "preprocessing": {"tokenizer_kind": "char", "tokenizer": tok.to_dict()},
    }
    torch.manual_seed(0)
    path = checkpoint_path(run / "gpt" / "checkpoints", 1)
    save_checkpoint(path, model=GPT(**kwargs), step=1, model_spec=spec)
    (run / "manifest.json").write_text(json.dumps({"status": "ok"}))


TINY = {"prompt_tokens": 8, "continuation_tokens": 8, "max_prompts": 60, "eval_prompts": 16,
        "shown_samples": 2}  # fmt: skip


@pytest.mark.data
def test_dpo_then_rlhf_deliverables_on_a_tiny_fake_base(tmp_path, monkeypatch):
    """Both deliverables end to end on a tiny base: their files, and rlhf's table reading the
    dpo run (same prompts, so comparable); the figures are only checked for being figures."""
    fake_gpt_run(tmp_path / "runs")  # the conftest points DLSTACK_RUNS there
    # an untrained char model writes no lexicon words: one-letter "words" give it preferences
    monkeypatch.setattr(preferences, "POSITIVE", frozenset("aeiou"))
    monkeypatch.setattr(preferences, "NEGATIVE", frozenset("xyz"))
    dpo_m = run_deliverable(dpo, overrides={**TINY, "betas": [0.1, 0.5], "steps": 4,
                                            "batch_size": 4, "eval_every": 2})  # fmt: skip
    assert 0.0 <= dpo_m["win_rate"] <= 1.0 and dpo_m["kl"] >= 0.0
    assert set(dpo_m["per_beta"]) == {"0.1", "0.5"}
    m = run_deliverable(rlhf, overrides={**TINY, "rm_steps": 4, "rm_batch_size": 4,
                                         "rm_eval_every": 2, "iterations": 2, "rollout_batch": 8,
                                         "minibatch": 4, "epochs": 1, "eval_every": 1})  # fmt: skip
    assert m["dpo_win_rate"] == dpo_m["win_rate"] and m["train_pairs"] == dpo_m["train_pairs"]
    run = latest_run_dir("layer7_research", "rlhf")
    for name in ("rlhf_curves.png", "reward_model.png", "table.md", "samples.txt"):
        assert (run / name).stat().st_size > 0
    assert "DPO β=0.1" in (run / "table.md").read_text()
