"""GPT: the KV cache against full recomputation, generation, init, parameter counts, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.sequence.gpt import GPT, GPTConfig, RMSNorm, decay_groups

TINY = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}


def tiny(pos="rope", **kwargs) -> GPT:
    torch.manual_seed(0)
    return GPT(40, **{**TINY, "pos": pos, **kwargs}).eval()


@pytest.mark.parametrize("pos", ["rope", "learned", "sinusoidal", "none"])
def test_cached_logits_equal_the_full_forward_over_a_generation(pos):
    model = tiny(pos, mlp="gelu" if pos == "learned" else "swiglu")
    ids = model.generate(torch.tensor([[1, 2, 3], [4, 5, 6]]), 9, seed=0)  # (2, 12)
    with torch.no_grad():
        full = model(ids)  # (2, 12, V)
        cache = model.new_cache(2)
        steps = [model(ids[:, :3], cache)] + [model(ids[:, t : t + 1], cache) for t in range(3, 12)]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-5


def test_seeded_generation_is_reproducible_and_cache_agnostic():
    model = tiny()
    prompt = torch.tensor([[3, 1, 4]])
    a = model.generate(prompt, 10, seed=7, top_k=10)
    assert torch.equal(a, model.generate(prompt, 10, seed=7, top_k=10))
    assert torch.equal(a, model.generate(prompt, 10, seed=7, top_k=10, use_cache=False))
    assert not torch.equal(a, model.generate(prompt, 10, seed=8, top_k=10))


def test_greedy_is_argmax_step_by_step_also_past_the_block_size():
    model = tiny()
    prompt = torch.tensor([[5, 9], [2, 7]])
    n = 20  # 2 + 20 > block_size 16: the cached generation falls back to a cropped context
    got = model.generate(prompt, n, temperature=0.0)
    ids = prompt
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids[:, -16:])[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    assert torch.equal(got, ids)
    assert torch.equal(got, model.generate(prompt, n, temperature=0.0, use_cache=False))


def test_generation_stops_at_eos_per_row():
    model = tiny()
    prompt = torch.tensor([[5, 9], [2, 7]])
    greedy = model.generate(prompt, 6, temperature=0.0)
    eos = int(greedy[0, 2])  # row 0 emits it first
    out = model.generate(prompt, 6, temperature=0.0, eos_id=eos)
    for row in out[:, 2:]:
        hits = (row == eos).nonzero()
        if len(hits):
            assert bool((row[int(hits[0]) :] == eos).all())  # finished rows keep emitting eos
    single = model.generate(prompt[:1], 6, temperature=0.0, eos_id=eos)
    assert single.tolist() == [[5, 9, eos]]  # every row finished: stops early
    assert model.training is False


def test_gpt2_init_scales_the_residual_projections_and_ties_the_embedding():
    torch.manual_seed(0)
    model = GPT(256, n_layer=8, n_head=4, n_embd=128, block_size=32)
    target = 0.02 / math.sqrt(2 * 8)
    for block in model.blocks:
        for w in (block.attn.out_proj.weight, block.mlp.out_proj.weight):
            assert abs(w.std().item() / target - 1) < 0.05
        assert abs(block.attn.qkv.weight.std().item() / 0.02 - 1) < 0.05
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = GPT(256, n_layer=1, n_head=4, n_embd=128, tie_weights=False)
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()


def hand_count(v, t, layers, c, mlp, bias, tie, pos, norm):
    """The parameter count written out from the architecture, independently of the model code."""
    f = 4 * c if mlp == "gelu" else 32 * -(-8 * c // (3 * 32))
    norm_size = 2 * c if norm == "layernorm" and bias else c
    attn = 4 * c * c + (4 * c if bias else 0)
    ffn = (2 if mlp == "gelu" else 3) * c * f + ((f if mlp == "gelu" else 2 * f) + c if bias else 0)
    embeddings = v * c * (1 if tie else 2) + (t * c if pos == "learned" else 0)
    return embeddings + layers * (attn + ffn + 2 * norm_size) + norm_size


@pytest.mark.parametrize(
    ("mlp", "bias", "tie", "pos", "norm"),
    [
        ("swiglu", False, True, "rope", "rmsnorm"),
        ("gelu", True, False, "learned", "layernorm"),
        ("swiglu", True, True, "sinusoidal", "layernorm"),
    ],
)
def test_num_params_matches_a_hand_count(mlp, bias, tie, pos, norm):
    kw = {"block_size": 24, "n_layer": 3, "n_head": 2, "n_embd": 40}
    model = GPT(50, mlp=mlp, bias=bias, tie_weights=tie, pos=pos, norm=norm, **kw)
    expected = hand_count(50, 24, 3, 40, mlp, bias, tie, pos, norm)
    assert model.num_params() == expected
    assert model.num_params() == sum(p.numel() for p in set(model.parameters()))
    lookup = (0 if tie else 50 * 40) + (24 * 40 if pos == "learned" else 0)
    assert model.num_params(non_embedding=True) == expected - lookup
    groups = decay_groups(model, 0.1)
    assert sum(p.numel() for g in groups for p in g["params"]) == expected
    assert all(p.dim() == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


def test_rmsnorm_equals_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    ours = RMSNorm(8).double()
    ref = torch.nn.RMSNorm(8, eps=1e-5).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ref.weight.copy_(ours.weight)
    assert (ours(x) - ref(x)).abs().max() <= 1e-12


def test_causal_hides_the_future_and_bidirectional_does_not():
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    changed = torch.tensor([[1, 2, 3, 4, 9]])
    for causal in (True, False):
        model = tiny(causal=causal)
        with torch.no_grad():
            diff = (model(ids)[:, :4] - model(changed)[:, :4]).abs().max()
        assert (diff == 0) == causal


def test_a_tiny_gpt_learns_a_cyclic_sequence():
    """A period-7 cycle over 7 tokens: the next token is a function of the current one, so the
    loss can go to 0 (from ln 7 = 1.95 at init); 60 AdamW steps take it below 0.05."""
    torch.manual_seed(0)
    model = GPT(7, block_size=16, n_layer=1, n_head=2, n_embd=32)
    opt = torch.optim.AdamW(decay_groups(model, 0.0), lr=1e-2)
    data = torch.arange(200) % 7
    for _ in range(60):
        starts = torch.randint(0, 200 - 17, (8,))
        batch = torch.stack([data[s : s + 17] for s in starts])  # (8, 17)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd=30 must be divisible by n_head=4"),
        ({"n_embd": 12, "n_head": 4}, "head_dim 3 must be even for pos='rope'"),
        ({"pos": "alibi"}, "GPTConfig.pos='alibi': expected one of"),
        ({"mlp": "relu"}, "GPTConfig.mlp='relu'"),
        ({"norm": "batchnorm"}, "GPTConfig.norm='batchnorm'"),
        ({"n_layer": 0}, "GPTConfig.n_layer must be a positive int, got 0"),
        ({"dropout": 1.0}, "GPTConfig.dropout must be in"),
        ({"d_ff": -3}, "GPTConfig.d_ff must be a positive int or None, got -3"),
        ({"n_layers": 3}, "unknown config fields \\['n_layers'\\]"),
    ],
)
def test_configs_that_cannot_build_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPT(10, **kwargs)


def test_bad_sequences_and_prompts_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="sequence length 17 .* exceeds block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty prompt .* got \\(1, 0\\)"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="prompt length 20 exceeds block_size=16"):
        model.generate(torch.zeros(1, 20, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=-1)
    assert GPTConfig(5).hidden_dim == 352  # 8/3 · 128 = 341.3 -> next multiple of 32


def test_gpt_traces_with_torch_export_at_a_dynamic_batch_and_length():
    # what layer 6's ONNX export stands on: one graph for every batch size and length
    torch.manual_seed(0)
    model = GPT(vocab_size=17, n_layer=1, n_head=2, n_embd=16, block_size=32).eval()
    dims = {0: torch.export.Dim("batch", max=8), 1: torch.export.Dim("seq", max=32)}
    program = torch.export.export(model, (torch.randint(0, 17, (2, 5)),), dynamic_shapes=(dims,))
    for shape in [(3, 9), (1, 1), (2, 32)]:
        idx = torch.randint(0, 17, shape)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(idx), model(idx), rtol=0, atol=1e-6)
