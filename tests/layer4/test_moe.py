"""MoE layer: one expert = the dense FFN, the balancing loss at and off balance, router gradients,
capacity dropping vs a naive per-token reference, top-2 renormalisation, batched experts vs a
loop, and the MoE GPT (parameter counts against the dense GPT, the task's losses)."""

import math

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.routing.moe import (
    MoEFeedForward,
    balance_loss,
    dispatch_slots,
    expert_capacity,
    z_loss,
)
from layer4_architectures.routing.moe_gpt import MoEGPT, MoELM
from layer4_architectures.sequence.gpt import GPT, MLP, GPTConfig


def _naive_moe(moe: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Per token, per choice, in priority order, each expert as its own small FFN."""
    tokens = x.reshape(-1, x.shape[-1])
    n, e, k = tokens.shape[0], moe.n_experts, moe.top_k
    logits = tokens.float() @ moe.router.weight.float().t()  # the router's fp32, as specified
    probs = logits.softmax(-1)
    top_p, top_i = probs.topk(k, dim=-1)
    gates = (top_p if k == 1 else top_p / top_p.sum(-1, keepdim=True)).double()
    cap = expert_capacity(n, e, k, moe.capacity_factor)
    used = [0] * e
    y = torch.zeros_like(tokens)
    for rank in range(k):
        for t in range(n):
            ex = int(top_i[t, rank])
            if used[ex] >= cap:
                continue
            used[ex] += 1
            h = tokens[t] @ moe.w_up[ex]
            a = F.silu(h) * (tokens[t] @ moe.w_gate[ex]) if moe.w_gate is not None else F.gelu(h)
            y[t] += gates[t, rank] * (a @ moe.w_down[ex])
    return y.view_as(x)


def test_one_expert_without_dropping_is_the_dense_ffn():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=10, n_embd=16, d_ff=24)
    dense = MLP(cfg).double()
    moe = MoEFeedForward(16, 24, 1, capacity_factor=1.0).double()
    with torch.no_grad():
        moe.w_up[0] = dense.up.weight.t()
        moe.w_gate[0] = dense.gate.weight.t()
        moe.w_down[0] = dense.out_proj.weight.t()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(moe(x), dense(x), rtol=0, atol=1e-12)
    assert moe.stats.dropped_fraction == 0


def test_balance_loss_is_one_at_perfect_balance_and_more_when_skewed():
    e, n = 4, 8
    uniform = torch.full((n, e), 1 / e)
    balanced = torch.arange(n)[:, None] % e  # every expert gets n/e tokens
    assert balance_loss(uniform, balanced, e).item() == pytest.approx(1.0, abs=1e-12)
    # a constructed router: zero weights give uniform probabilities
    moe = MoEFeedForward(6, 8, e).double()
    with torch.no_grad():
        moe.router.weight.zero_()
    moe(torch.randn(n, 6, dtype=torch.float64))
    # ties go to expert 0: f = (1,0,0,0), P = 1/4 → E · (1 · 1/4) = 1 as well
    assert moe.stats.balance_loss.item() == pytest.approx(1.0)
    skewed_p = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).expand(n, e)
    all_to_0 = torch.zeros(n, 1, dtype=torch.long)
    assert balance_loss(skewed_p, all_to_0, e).item() == pytest.approx(e * 0.7)
    assert balance_loss(skewed_p, all_to_0, e) > 1.0


def test_constructed_router_balances_exactly():
    """A router whose logits send token t to expert t mod E with equal mean probabilities."""
    e, d = 4, 4
    moe = MoEFeedForward(d, 8, e).double()
    with torch.no_grad():
        moe.router.weight.copy_(5.0 * torch.eye(e, d, dtype=torch.float64))
    x = torch.eye(d, dtype=torch.float64).repeat(2, 1)  # 8 tokens, 2 per expert
    moe(x)
    assert moe.stats.balance_loss.item() == pytest.approx(1.0, abs=1e-12)
    assert moe.stats.routed.tolist() == [2, 2, 2, 2]


def test_z_loss_is_mean_squared_logsumexp():
    logits = torch.randn(7, 5, dtype=torch.float64)
    want = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.tolist()) / 7
    assert z_loss(logits).item() == pytest.approx(want, rel=1e-12)


def test_gradients_reach_the_router_through_output_and_balance_loss():
    torch.manual_seed(1)
    moe = MoEFeedForward(8, 16, 4, top_k=2)
    x = torch.randn(2, 6, 8)
    moe(x).pow(2).sum().backward()
    g_out = moe.router.weight.grad.clone()
    assert g_out.abs().sum() > 0
    moe.zero_grad()
    moe(x)
    moe.stats.balance_loss.backward()
    assert moe.router.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("top_k", "factor"), [(1, 0.5), (1, 1.0), (2, 0.6), (2, 2.0)])
def test_capacity_drops_exactly_the_assignments_past_capacity(top_k, factor):
    torch.manual_seed(2)
    moe = MoEFeedForward(8, 12, 4, top_k=top_k, capacity_factor=factor).double()
    with torch.no_grad():
        moe.router.weight[0] += 0.5  # a skewed router so that something drops
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(moe(x), _naive_moe(moe, x), rtol=0, atol=1e-12)
    n = 21
    cap = expert_capacity(n, 4, top_k, factor)
    routed = moe.stats.routed
    want_kept = torch.clamp(routed, max=cap)
    assert moe.stats.kept.tolist() == want_kept.tolist()
    want_dropped = 1 - want_kept.sum().item() / (n * top_k)
    assert moe.stats.dropped_fraction.item() == pytest.approx(want_dropped)
    if factor < 1:
        assert want_dropped > 0


def test_dispatch_serves_first_choices_before_second_choices():
    top_i = torch.tensor([[0, 1], [1, 0], [0, 1]])  # 3 tokens, top-2, 2 experts
    slot, keep = dispatch_slots(top_i, 2, capacity=2)
    # expert 0 queue: t0 (rank 0), t2 (rank 0), t1 (rank 1, dropped)
    assert keep.tolist() == [[True, True], [True, False], [True, False]]
    assert slot[:, 0].tolist() == [0, 2, 1]


def test_top2_combine_weights_are_renormalised():
    torch.manual_seed(3)
    moe = MoEFeedForward(8, 12, 4, top_k=2)
    tokens = torch.randn(10, 8)
    logits, top_i, gates = moe.route(tokens)
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    p = logits.softmax(-1).gather(1, top_i)
    torch.testing.assert_close(gates, p / p.sum(-1, keepdim=True))
    top1 = MoEFeedForward(8, 12, 4, top_k=1)
    logits1, i1, g1 = top1.route(tokens)
    torch.testing.assert_close(g1, logits1.softmax(-1).gather(1, i1))  # Switch: raw prob


def test_batched_experts_equal_a_loop_over_experts():
    torch.manual_seed(4)
    for gated in (True, False):
        moe = MoEFeedForward(8, 12, 3, gated=gated).double()
        h = torch.randn(3, 5, 8, dtype=torch.float64)
        loop = []
        for e in range(3):
            a = h[e] @ moe.w_up[e]
            a = F.silu(a) * (h[e] @ moe.w_gate[e]) if gated else F.gelu(a)
            loop.append(a @ moe.w_down[e])
        torch.testing.assert_close(moe.experts(h), torch.stack(loop), rtol=0, atol=1e-12)


def test_router_runs_in_fp32_under_bf16_autocast():
    moe = MoEFeedForward(8, 12, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _, gates = moe.route(torch.randn(5, 8))
        y = moe(torch.randn(2, 3, 8))
    assert logits.dtype == torch.float32 and gates.dtype == torch.float32
    assert y.shape == (2, 3, 8)


def test_bad_moe_configs_name_the_field():
    with pytest.raises(ValueError, match="top_k"):
        MoEFeedForward(8, 8, 1, top_k=2)
    with pytest.raises(ValueError, match="n_experts"):
        MoEFeedForward(8, 8, 0)
    with pytest.raises(ValueError, match="capacity_factor"):
        MoEFeedForward(8, 8, 2, capacity_factor=0)
    with pytest.raises(ValueError, match="moe_every"):
        MoEGPT(16, n_layer=2, n_embd=16, n_head=2, moe_every=3)


def test_moe_gpt_parameter_counts_against_the_dense_gpt():
    kw = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}
    dense = GPT(32, **kw)
    moe = MoEGPT(32, n_experts=4, top_k=1, **kw)
    ffn = sum(p.numel() for p in dense.blocks[0].mlp.parameters())
    router = 4 * 16
    total = sum(p.numel() for p in moe.parameters())
    assert moe.num_params() == total
    assert total == dense.num_params() + 2 * (3 * ffn + router)
    assert moe.active_params() == dense.num_params() + 2 * router
    out_std = moe.blocks[0].mlp.w_down.std().item()
    assert out_std == pytest.approx(0.02 / math.sqrt(4), rel=0.15)


def test_moe_task_adds_the_weighted_router_losses():
    torch.manual_seed(5)
    model = MoEGPT(32, block_size=16, n_layer=2, n_head=2, n_embd=16, n_experts=4)
    task = MoELM(model, balance_coef=0.01, z_coef=1e-3)
    x = torch.randint(0, 32, (2, 8))
    y = torch.randint(0, 32, (2, 8))
    loss, logs = task.training_step((x, y), 0, "main")
    stats = model.router_stats()
    want = (
        logs["ce"] + 0.01 * sum(s.balance_loss for s in stats) + 1e-3 * sum(s.z_loss for s in stats)
    )
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(logs["ce"], F.cross_entropy(model(x).reshape(-1, 32), y.reshape(-1)))
    shares = sum(logs[f"util_l0_e{i}"] for i in range(4))
    assert shares.item() == pytest.approx(1.0)
    sums = task.validation_step((x, y))
    assert set(sums) == {"loss", "accuracy", "dropped"}
    with pytest.raises(TypeError, match="MoEGPT"):
        MoELM(GPT(32, block_size=16, n_layer=1, n_head=2, n_embd=16))
