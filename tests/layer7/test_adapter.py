"""Bottleneck adapters: the identity at init, the block's equations written out by hand, gradients
only for the adapters, the parameter count, KV-cache generation through the wrapped sublayers,
bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from layer4_architectures.sequence.gpt import GPT
from layer7_research.adaptation import (
    Adapted,
    BottleneckAdapter,
    adapter_parameters,
    adapters,
    apply_adapters,
    trainable_parameters,
)

TINY = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0}


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(40, **TINY)


def ids(batch: int = 3, t: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 40, (batch, t), generator=torch.Generator().manual_seed(seed))


def randomise_up(model: nn.Module, seed: int = 2, std: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in adapters(model).values():
            a.up.weight.copy_(std * torch.randn(a.up.weight.shape, generator=g))
            a.up.bias.copy_(std * torch.randn(a.up.bias.shape, generator=g))


@pytest.mark.parametrize("where", [("attn",), ("mlp",), ("attn", "mlp")])
def test_outputs_unchanged_at_init_exactly(where):
    base = tiny_gpt()
    model = copy.deepcopy(base)
    names = apply_adapters(model, bottleneck=4, where=where)
    assert names == [f"blocks.{i}.{w}" for i in range(2) for w in where]
    with torch.no_grad():
        assert torch.equal(model(ids()), base(ids()))


def gelu_erf(z: torch.Tensor) -> torch.Tensor:
    """GELU written from its definition, z Φ(z) = z (1 + erf(z/√2)) / 2."""
    return 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))


def by_hand(h: torch.Tensor, a: BottleneckAdapter) -> torch.Tensor:
    """h + W_up GELU(W_down h + b_down) + b_up."""
    z = gelu_erf(h @ a.down.weight.T + a.down.bias)
    return h + z @ a.up.weight.T + a.up.bias


def test_adapted_block_is_houlsbys_equations():
    base = tiny_gpt()
    model = copy.deepcopy(base)
    apply_adapters(model, bottleneck=5)
    randomise_up(model)
    x = ids()
    with torch.no_grad():
        h = base.tok_emb(x)  # (B, T, C); RoPE positions, no table to add
        for i, block in enumerate(base.blocks):
            a_attn, a_mlp = model.blocks[i].attn.adapter, model.blocks[i].mlp.adapter
            h = h + by_hand(block.attn(block.norm1(h), base.rope), a_attn)
            h = h + by_hand(block.mlp(block.norm2(h)), a_mlp)
        want = base.lm_head(base.norm_f(h))
        got = model(x)
    assert (got - want).abs().max() <= 1e-5
    assert (got - base(x)).abs().max() > 1e-3  # the adapters do change the model


def test_only_the_adapters_receive_gradients():
    model = tiny_gpt()
    apply_adapters(model, bottleneck=4)
    torch.nn.functional.cross_entropy(model(ids()).flatten(0, 1), ids(seed=3).flatten()).backward()
    for name, p in model.named_parameters():
        is_adapter = ".adapter." in name
        assert p.requires_grad == is_adapter, name
        if not is_adapter:
            assert p.grad is None, name
    for a in adapters(model).values():
        # W_up = 0 at init: nothing flows back into W_down yet, while W_up, b_up get gradients
        assert torch.count_nonzero(a.down.weight.grad) == 0
        assert torch.count_nonzero(a.up.weight.grad) > 0
        assert torch.count_nonzero(a.up.bias.grad) > 0


@pytest.mark.parametrize(("m", "where"), [(1, ("attn",)), (4, ("mlp",)), (7, ("attn", "mlp"))])
def test_trainable_count_is_the_formula(m, where):
    model = tiny_gpt()
    apply_adapters(model, bottleneck=m, where=where)
    d, n = 16, 2 * len(where)  # n_embd, adapters (two blocks)
    assert adapter_parameters(d, m) == 2 * d * m + d + m
    assert trainable_parameters(model) == n * (2 * d * m + d + m)
    assert len(adapters(model)) == n


def test_generation_with_the_kv_cache_passes_through_the_wrapper():
    model = tiny_gpt().eval()
    apply_adapters(model, bottleneck=4)
    randomise_up(model)
    prompt = torch.tensor([[3, 1, 4], [1, 5, 9]])
    cached = model.generate(prompt, 10, temperature=0.0)
    assert torch.equal(cached, model.generate(prompt, 10, temperature=0.0, use_cache=False))
    with torch.no_grad():  # greedy: each new token is the argmax of the full forward's logits
        logits = model(cached[:, :-1])[:, prompt.shape[1] - 1 :]
    assert torch.equal(logits.argmax(-1), cached[:, prompt.shape[1] :])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="subset of"):
        apply_adapters(tiny_gpt(), bottleneck=4, where=("ffn",))
    with pytest.raises(ValueError, match="subset of"):
        apply_adapters(tiny_gpt(), bottleneck=4, where=())
    with pytest.raises(ValueError, match="bottleneck must be a positive int"):
        apply_adapters(tiny_gpt(), bottleneck=0)
    with pytest.raises(ValueError, match="no layer-4 GPT Block"):
        apply_adapters(nn.Sequential(nn.Linear(4, 4)), bottleneck=2)
    with pytest.raises(ValueError, match="m must be a positive int"):
        BottleneckAdapter(8, 0)
    model = tiny_gpt()
    apply_adapters(model, bottleneck=2, where="attn")
    assert isinstance(model.blocks[0].attn, Adapted)
    with pytest.raises(ValueError, match="already has adapters"):
        apply_adapters(model, bottleneck=2)
