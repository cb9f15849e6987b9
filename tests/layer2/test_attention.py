"""Scaled dot-product and multi-head attention against torch, masks included.

Fully masked rows (a query allowed to attend to nothing) are defined to give zero weights, a
zero output and zero gradient; torch's CPU kernel gives the same, which the test checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import MultiHeadAttention, scaled_dot_product_attention
from tests.layer2.torch_compare import assert_close


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 2),
    heads=st.integers(1, 3),
    tq=st.integers(1, 5),
    tk=st.integers(1, 5),
    d=st.integers(1, 4),
    dv=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "causal", "random", "random+causal"]),
    seed=st.integers(0, 2**16),
)
def test_sdpa_matches_torch(b, heads, tq, tk, d, dv, mask_kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (
        rng.normal(size=(b, heads, tq, d)),
        rng.normal(size=(b, heads, tk, d)),
        rng.normal(size=(b, heads, tk, dv)),
    )
    mask = None
    if "random" in mask_kind:
        mask = rng.random((b, 1, tq, tk)) < 0.6
        mask[0, 0, 0] = False  # always at least one fully masked row
    causal = "causal" in mask_kind
    Q, K, V = (Tensor(a, requires_grad=True) for a in (q, k, v))
    tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out, weights = scaled_dot_product_attention(Q, K, V, mask, causal, return_weights=True)
    g = rng.normal(size=out.shape)
    out.backward(g)
    ref_mask = None if mask is None else torch.tensor(mask)
    if causal and mask is not None:  # torch takes one or the other: combine them for it
        ref_mask = ref_mask & torch.tril(torch.ones(tq, tk, dtype=torch.bool))
    ref = torch.nn.functional.scaled_dot_product_attention(
        tq_, tk_, tv_, attn_mask=ref_mask, is_causal=causal and mask is None
    )
    ref.backward(torch.tensor(g))
    assert_close(out, ref, "attention output")
    for name, ours, theirs in (("q", Q, tq_), ("k", K, tk_), ("v", V, tv_)):
        assert_close(ours.grad, theirs.grad, f"grad {name}")
    allowed = (
        np.ones((b, heads, tq, tk), bool)
        if mask is None
        else np.broadcast_to(mask, (b, heads, tq, tk))
    )
    if causal:
        allowed = allowed & np.tril(np.ones((tq, tk), bool))
    dead = ~allowed.any(axis=-1)  # fully masked rows: zero weights, zero output, zero grad
    np.testing.assert_array_equal(out.data[dead], 0.0)
    np.testing.assert_array_equal(Q.grad[dead], 0.0)
    np.testing.assert_allclose(weights.sum(axis=-1)[~dead], 1.0, atol=1e-12)
    assert (weights[~allowed] == 0).all()


def _packed_torch_mha(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """torch's MHA holds q/k/v projections stacked in in_proj_weight: copy ours into it."""
    e, h = ours.embed_dim, ours.num_heads
    ref = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    p = {n: torch.tensor(t.data) for n, t in ours.named_parameters()}
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([p["q_proj.weight"], p["k_proj.weight"], p["v_proj.weight"]])
        )
        ref.in_proj_bias.copy_(torch.cat([p["q_proj.bias"], p["k_proj.bias"], p["v_proj.bias"]]))
        ref.out_proj.weight.copy_(p["out_proj.weight"])
        ref.out_proj.bias.copy_(p["out_proj.bias"])
    return ref


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_torch_mha(causal, rng):
    ours = MultiHeadAttention(12, 3, rng=rng, dtype=np.float64)
    ref = _packed_torch_mha(ours)
    xq, xk = rng.normal(size=(2, 5, 12)), rng.normal(size=(2, 5, 12))
    pad = np.zeros((2, 5), bool)
    pad[1, 3:] = True  # padded keys of the second sequence
    Xq, Xk = Tensor(xq, requires_grad=True), Tensor(xk, requires_grad=True)
    tq, tk = torch.tensor(xq, requires_grad=True), torch.tensor(xk, requires_grad=True)
    out, w = ours(Xq, Xk, Xk, key_padding_mask=pad, is_causal=causal, need_weights=True)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1) if causal else None  # True = block
    ref_out, ref_w = ref(tq, tk, tk, key_padding_mask=torch.tensor(pad), attn_mask=mask,
                         need_weights=True, average_attn_weights=False)  # fmt: skip
    g = rng.normal(size=out.shape)
    out.backward(g)
    ref_out.backward(torch.tensor(g))
    assert_close(out, ref_out, "mha output")
    assert_close(w, ref_w, "mha weights")
    assert_close(Xq.grad, tq.grad, "grad query")
    assert_close(Xk.grad, tk.grad, "grad key/value")
    assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad, "grad out_proj.weight")
    qkv = np.concatenate(
        [ours.q_proj.weight.grad, ours.k_proj.weight.grad, ours.v_proj.weight.grad]
    )
    assert_close(qkv, ref.in_proj_weight.grad, "grad q/k/v projections")


def test_attention_bad_masks_and_shapes(rng):
    q = Tensor(rng.normal(size=(2, 1, 4, 3)))
    with pytest.raises(
        ValueError, match=r"attn_mask of shape \(3, 3\) does not broadcast .* \(2, 1, 4, 4\)"
    ):
        scaled_dot_product_attention(q, q, q, np.ones((3, 3), bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, q, q, np.ones((4, 4)))
    with pytest.raises(ValueError, match="need q"):
        scaled_dot_product_attention(q, Tensor(rng.normal(size=(2, 1, 4, 5))), q)
    mha = MultiHeadAttention(6, 2, rng=rng, dtype=np.float64)
    x = Tensor(rng.normal(size=(2, 4, 6)))
    with pytest.raises(
        ValueError, match=r"key_padding_mask must be bool of shape \(B, T_k\) = \(2, 4\)"
    ):
        mha(x, key_padding_mask=np.zeros((4, 2), bool))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(6, 4, rng=rng)
