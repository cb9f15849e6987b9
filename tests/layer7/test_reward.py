"""The Bradley–Terry loss against numpy and against scikit-learn's logistic regression (a linear
reward is exactly logistic regression on feature differences, no intercept); the reward model's
trunk against the GPT it copies; a learnable preference learnt through layer 3's Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layer3_framework import Trainer, TrainerConfig
from layer4_architectures.sequence.gpt import GPT
from layer7_research.alignment import (
    RewardModel,
    RewardTask,
    bradley_terry_loss,
    normalise_reward,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bradley_terry_loss_matches_numpy():
    rng = np.random.default_rng(0)
    rw, rl = rng.normal(0, 4, (2, 50))
    got = bradley_terry_loss(torch.tensor(rw), torch.tensor(rl)).numpy()
    np.testing.assert_allclose(got, -np.log(expit(rw - rl)), rtol=1e-10)
    with pytest.raises(ValueError, match="one shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))


def test_linear_bradley_terry_is_logistic_regression_on_differences():
    rng = np.random.default_rng(1)
    n, d = 800, 5
    true_w = rng.normal(0, 1, d)
    xa, xb = rng.normal(0, 1, (2, n, d))
    a_wins = rng.random(n) < expit((xa - xb) @ true_w)
    xw, xl = np.where(a_wins[:, None], xa, xb), np.where(a_wins[:, None], xb, xa)

    # ours: minimise the mean BT loss of r(x) = w·x by L-BFGS
    w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
    tw, tl = torch.tensor(xw), torch.tensor(xl)
    opt = torch.optim.LBFGS(
        [w],
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = bradley_terry_loss(tw @ w, tl @ w).mean()
        loss.backward()
        return loss

    opt.step(closure)
    # sklearn: each pair as (x_w − x_l, 1) and its mirror (x_l − x_w, 0): the same likelihood
    diff = xw - xl
    clf = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    clf.fit(np.vstack([diff, -diff]), np.r_[np.ones(n), np.zeros(n)])
    np.testing.assert_allclose(w.detach().numpy(), clf.coef_[0], rtol=1e-4, atol=1e-6)


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=7, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1).eval()


def test_reward_model_is_the_gpt_trunk_and_a_head_on_the_last_token():
    gpt = tiny_gpt()
    rm = RewardModel(gpt).eval()
    ids = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(2))
    hidden = rm.backbone(ids)  # (B, T, C)
    # the GPT's logits are the trunk's hidden states times the tied embedding
    torch.testing.assert_close(hidden @ gpt.tok_emb.weight.T, gpt(ids), atol=1e-5, rtol=1e-5)
    assert torch.equal(rm.score(ids), torch.zeros(3))  # a zero head: no preference yet
    nn.init.normal_(rm.head.weight)
    expected = hidden[:, -1] @ rm.head.weight[0] + rm.head.bias
    torch.testing.assert_close(rm.score(ids), expected)
    assert rm(ids).shape == (3, 9)
    assert not any(p is q for p in rm.parameters() for q in gpt.parameters())  # a copy


def test_reward_task_learns_a_preference_and_reports_held_out_accuracy():
    """Chosen continuations end in token 1, rejected ones in token 2: learnable from the last
    token, so held-out accuracy must reach 1."""
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 7, (2, 160, 8), generator=gen)
    ids[0, :, -1], ids[1, :, -1] = 1, 2
    train = DataLoader(TensorDataset(ids[0, :128], ids[1, :128]), batch_size=32)
    held_out = DataLoader(TensorDataset(ids[0, 128:], ids[1, 128:]), batch_size=32)
    rm = RewardModel(tiny_gpt())
    trainer = Trainer(
        RewardTask(rm),
        torch.optim.AdamW(rm.parameters(), lr=3e-3),
        train,
        TrainerConfig(max_steps=60, log_every=20, progress=False),
        eval_loader=held_out,
    )
    assert trainer.evaluate()["accuracy"] == 0.0  # ties (r_w = r_l = 0) are not wins
    trainer.fit()
    result = trainer.evaluate()
    assert result["accuracy"] == 1.0 and result["loss"] < 0.2


def test_normalise_reward_gives_mean_zero_std_one_and_keeps_the_order():
    rm = RewardModel(tiny_gpt())
    nn.init.normal_(rm.head.weight)
    nn.init.constant_(rm.head.bias, 3.0)
    ids = torch.randint(0, 7, (50, 6), generator=torch.Generator().manual_seed(4))
    before = rm.score(ids).detach()
    stats = normalise_reward(rm, ids, batch_size=16)
    after = rm.score(ids).detach()
    torch.testing.assert_close(after, (before - before.mean()) / before.std())
    assert stats["mean"] == pytest.approx(before.mean().item(), rel=1e-5)
    assert torch.equal(after.argsort(), before.argsort())
    with pytest.raises(ValueError, match="constant"):
        normalise_reward(RewardModel(tiny_gpt()), ids)  # a zero head scores everything 0
