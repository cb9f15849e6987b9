"""Self-attention: the fused SDPA path against written-out softmax attention, against layer 2's
scratch attention and layer 3's port (the cross-layer ladder), and its KV cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import layer1_autograd as l1
import layer2_primitives as l2
from layer2_primitives.state import load_state_arrays
from layer3_framework.ports import MultiHeadAttention as PortMHA
from layer3_framework.ports import port
from layer4_architectures.sequence.attention import KVCache, SelfAttention, causal_mask
from layer4_architectures.sequence.rope import RotaryEmbedding


def naive_attention(x: torch.Tensor, attn: SelfAttention, causal: bool) -> torch.Tensor:
    """Loop over heads and query positions; softmax over the keys each query may see."""
    b, t, c = x.shape
    h, d = attn.n_head, attn.head_dim
    q, k, v = attn.qkv(x).split(c, dim=-1)  # (B, T, C) each
    out = torch.zeros_like(x)
    for head in range(h):
        cols = slice(head * d, (head + 1) * d)
        for i in range(t):
            keys = i + 1 if causal else t
            scores = torch.einsum("bd,bsd->bs", q[:, i, cols], k[:, :keys, cols]) / math.sqrt(d)
            w = scores.softmax(-1)  # (B, keys)
            out[:, i, cols] = torch.einsum("bs,bsd->bd", w, v[:, :keys, cols])
    return attn.out_proj(out)


@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_path_equals_explicit_and_naive_attention(causal):
    torch.manual_seed(0)
    attn = SelfAttention(12, 3, causal=causal, bias=True).double().eval()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    fused = attn(x)
    attn.need_weights = True
    explicit = attn(x)
    assert (fused - explicit).abs().max() <= 1e-10
    assert (fused - naive_attention(x, attn, causal)).abs().max() <= 1e-10
    w = attn.last_attention  # (B, H, T, T)
    assert w.shape == (2, 3, 7, 7)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
    assert bool((w.triu(1) == 0).all()) == causal


def test_a_padding_mask_combines_with_the_causal_mask():
    torch.manual_seed(1)
    attn = SelfAttention(8, 2).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1, ..., 3:] = False  # the second sequence's last two keys are padding
    fused = attn(x, attn_mask=keep)
    attn.need_weights = True
    explicit = attn(x, attn_mask=keep)
    assert (fused - explicit).abs().max() <= 1e-10
    assert bool((attn.last_attention[1, :, :, 3:] == 0).all())
    # the unpadded rows see exactly what they would without the mask
    assert (fused[0] - attn(x[:1])[0]).abs().max() <= 1e-10


def _scratch_copy(attn: SelfAttention) -> l2.MultiHeadAttention:
    """Layer 2's numpy attention carrying the weights of ours (our qkv rows are [q; k; v])."""
    c = attn.n_embd
    scratch = l2.MultiHeadAttention(
        c, attn.n_head, bias=True, rng=np.random.default_rng(0), dtype=np.float64
    )
    w = attn.qkv.weight.detach().numpy()
    b = attn.qkv.bias.detach().numpy()
    state = {}
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        state[f"{name}.weight"] = w[i * c : (i + 1) * c]
        state[f"{name}.bias"] = b[i * c : (i + 1) * c]
    state["out_proj.weight"] = attn.out_proj.weight.detach().numpy()
    state["out_proj.bias"] = attn.out_proj.bias.detach().numpy()
    load_state_arrays(scratch, state)
    return scratch


def test_the_cross_layer_ladder_layer2_scratch_and_layer3_port_agree_in_float64():
    torch.manual_seed(2)
    attn = SelfAttention(12, 3, causal=True, bias=True).double().eval()
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    ours = attn(x).detach().numpy()
    scratch = _scratch_copy(attn)
    layer2 = scratch(l1.Tensor(x.numpy()), is_causal=True).data
    twin = port(scratch)  # layer 3's port of the scratch model
    assert isinstance(twin, PortMHA)
    layer3 = twin(x, is_causal=True).detach().numpy()
    assert np.abs(ours - layer2).max() <= 1e-10
    assert np.abs(ours - layer3).max() <= 1e-10
    # the check can fail: without the causal mask layer 2 gives something else
    assert np.abs(ours - scratch(l1.Tensor(x.numpy())).data).max() > 1e-3


def test_the_kv_cache_gives_the_logits_of_the_full_sequence_with_rope():
    torch.manual_seed(3)
    attn = SelfAttention(16, 2).eval()
    rope = RotaryEmbedding(8, 12)
    x = torch.randn(3, 10, 16)
    full = attn(x, rope)
    cache = KVCache(1, 3, 2, 12, 8)
    parts = [attn(x[:, :4], rope, cache[0])]  # prefill 4, then one position per step
    parts += [attn(x[:, t : t + 1], rope, cache[0]) for t in range(4, 10)]
    assert cache.length == 10
    assert (torch.cat(parts, dim=1) - full).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="KV cache overflow: 10 cached \\+ 3 new .* max_len=12"):
        attn(x[:, :3], None, cache[0])


def test_causal_mask_is_aligned_to_the_last_queries():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    with pytest.raises(ValueError, match="n_embd=10 must be divisible by n_head=3"):
        SelfAttention(10, 3)
