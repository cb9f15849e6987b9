"""LoRA: the identity at init, the formula against numpy, merge == unmerged, merge → unmerge
restores W, gradients only for A and B, the parameter count, and the ``peft`` library's LoRA
holding the same A and B (same outputs, same gradients)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from layer4_architectures.sequence.gpt import GPT
from layer7_research.adaptation import (
    LoRALinear,
    apply_lora,
    lora_layers,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    trainable_parameters,
)

TINY = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0}
ATTN = ["attn.qkv", "attn.out_proj"]


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(40, **TINY)


def ids(batch: int = 3, t: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 40, (batch, t), generator=torch.Generator().manual_seed(seed))


def randomise_b(model: nn.Module, seed: int = 2, std: float = 0.1) -> None:
    """Non-zero B everywhere, so that the adapters change the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(std * torch.randn(layer.lora_B.shape, generator=g))


def test_outputs_unchanged_at_init_exactly():
    base = tiny_gpt()
    model = copy.deepcopy(base)
    names = apply_lora(model, ATTN, r=4, alpha=8.0)
    assert names == [f"blocks.{i}.attn.{p}" for i in range(2) for p in ("qkv", "out_proj")]
    with torch.no_grad():
        assert torch.equal(model(ids()), base(ids()))


def test_init_b_zero_and_a_kaiming_uniform():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(256, 64), r=64, alpha=1.0)
    assert torch.count_nonzero(layer.lora_B) == 0
    assert not any(p.requires_grad for p in layer.base.parameters())  # W, b frozen
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    a = layer.lora_A.detach().numpy().ravel()
    bound = 1 / np.sqrt(256)  # kaiming_uniform(a=√5): U(−1/√fan_in, 1/√fan_in), nn.Linear's
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.95 * bound
    assert abs(a.std() - bound / np.sqrt(3)) < 0.03 * bound  # the std of U(−b, b) is b/√3


def test_forward_is_the_formula_in_numpy():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(7, 5), r=3, alpha=6.0)
    randomise_b(layer)
    x = torch.randn(4, 2, 7)
    w, b = layer.base.weight.detach().numpy(), layer.base.bias.detach().numpy()
    a, bb = layer.lora_A.detach().numpy(), layer.lora_B.detach().numpy()
    x64 = x.numpy().astype(np.float64)
    want = x64 @ w.T.astype(np.float64) + b + (6.0 / 3) * (x64 @ a.T) @ bb.T  # W x + b + (α/r) BAx
    got = layer(x).detach().numpy()
    assert np.abs(got - want).max() <= 1e-6


def test_dropout_acts_on_the_adapter_input_only():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=2, alpha=2.0, dropout=0.5)
    randomise_b(layer)
    x = torch.randn(5, 8)
    torch.manual_seed(11)
    got = layer(x)
    torch.manual_seed(11)
    dropped = torch.nn.functional.dropout(x, 0.5)  # the same mask: the same generator draw
    base = layer.base(x)
    want = base + 1.0 * dropped @ layer.lora_A.T @ layer.lora_B.T
    assert (got - want).abs().max() <= 1e-6
    assert (got - base).abs().max() > 1e-3
    layer.eval()  # no dropout in eval: W x + b + (α/r) B A x
    want_eval = base + x @ layer.lora_A.T @ layer.lora_B.T
    assert (layer(x) - want_eval).abs().max() <= 1e-6


def test_merged_gives_the_unmerged_outputs():
    model = tiny_gpt()
    apply_lora(model, ATTN, r=4, alpha=8.0)
    randomise_b(model)
    merged = merge_lora(model)
    with torch.no_grad():
        out, out_merged = model(ids()), merged(ids())
        assert not torch.equal(out, tiny_gpt()(ids()))  # the adapters do change the model
    assert (out - out_merged).abs().max() <= 1e-6
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert lora_layers(model)  # the original keeps its adapters, unmerged
    assert not any(layer.merged for layer in lora_layers(model).values())
    # a plain GPT again: same state-dict names, loads into a fresh GPT, every parameter trainable
    fresh = tiny_gpt(seed=5)
    fresh.load_state_dict(merged.state_dict(), strict=True)
    with torch.no_grad():
        assert (fresh(ids()) - out).abs().max() <= 1e-6
    assert trainable_parameters(merged) == trainable_parameters(tiny_gpt())


def test_merge_adds_the_delta_and_unmerge_restores_w():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(9, 6, bias=False), r=2, alpha=5.0)
    randomise_b(layer)
    w0 = layer.base.weight.detach().clone().numpy().astype(np.float64)
    a, b = (layer.lora_A.detach().numpy(), layer.lora_B.detach().numpy())
    x = torch.randn(3, 9)
    before = layer(x).detach()
    layer.merge()
    assert np.abs(layer.base.weight.detach().numpy() - (w0 + 2.5 * b @ a)).max() <= 1e-6
    assert (layer(x).detach() - before).abs().max() <= 1e-6
    layer.unmerge()
    assert np.abs(layer.base.weight.detach().numpy() - w0).max() <= 1e-6
    assert (layer(x).detach() - before).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(ValueError, match="already merged"):
        layer.merge()


def test_only_the_adapters_receive_gradients():
    model = tiny_gpt()
    apply_lora(model, ATTN, r=2, alpha=4.0)
    torch.nn.functional.cross_entropy(model(ids()).flatten(0, 1), ids(seed=3).flatten()).backward()
    for name, p in model.named_parameters():
        is_lora = name.endswith(("lora_A", "lora_B"))
        assert p.requires_grad == is_lora, name
        if not is_lora:
            assert p.grad is None, name
    for layer in lora_layers(model).values():
        # B = 0 at init, so ∂L/∂A = (α/r) Bᵀ (∂L/∂h) xᵀ = 0 exactly while ∂L/∂B ≠ 0
        assert torch.count_nonzero(layer.lora_A.grad) == 0
        assert torch.count_nonzero(layer.lora_B.grad) > 0


@pytest.mark.parametrize("r", [1, 3, 8])
def test_trainable_count_is_the_formula(r):
    plain = tiny_gpt()
    shapes = {
        n: (m.in_features, m.out_features)
        for n, m in plain.named_modules()
        if isinstance(m, nn.Linear) and n.endswith(("qkv", "up"))
    }
    model = copy.deepcopy(plain)
    names = apply_lora(model, ["qkv", "mlp.up"], r=r, alpha=1.0)
    assert sorted(names) == sorted(shapes)
    # n_embd 16: qkv 16 -> 48, SwiGLU up 16 -> 64 (8/3·16 rounded up to 32s), two blocks
    assert r * 2 * ((16 + 48) + (16 + 64)) == sum(
        lora_parameters(i, o, r) for i, o in shapes.values()
    )
    assert trainable_parameters(model) == r * 2 * ((16 + 48) + (16 + 64))
    state = lora_state_dict(model)
    assert sorted(state) == sorted(f"{n}.lora_{x}" for n in names for x in "AB")
    assert sum(v.numel() for v in state.values()) == trainable_parameters(model)


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"match no nn.Linear.*blocks\.0\.attn\.qkv"):
        apply_lora(tiny_gpt(), ["attn.q_proj"], r=2, alpha=2.0)
    with pytest.raises(ValueError, match="match no nn.Linear"):
        apply_lora(tiny_gpt(), ["proj"], r=2, alpha=2.0)  # a suffix ends at a dot: not out_proj
    with pytest.raises(ValueError, match="tied"):
        apply_lora(tiny_gpt(), ["lm_head"], r=2, alpha=2.0)
    with pytest.raises(ValueError, match="non-empty"):
        apply_lora(tiny_gpt(), [], r=2, alpha=2.0)
    for kwargs, what in (
        ({"r": 0}, "rank"),
        ({"alpha": 0.0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
    ):
        with pytest.raises(ValueError, match=what):
            LoRALinear(nn.Linear(4, 4), **{"r": 2, "alpha": 2.0, **kwargs})
    with pytest.raises(ValueError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=2, alpha=2.0)
    model = tiny_gpt()
    apply_lora(model, "qkv", r=2, alpha=2.0)
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model, "out_proj", r=2, alpha=2.0)


# ----------------------------------------------------------------------------- against peft


def peft_twin(base: GPT, ours: GPT, r: int, alpha: float) -> GPT:
    """``base`` with peft's LoRA on the same targets, holding our A and B."""
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=ATTN, lora_dropout=0.0)
    twin = peft.inject_adapter_in_model(config, copy.deepcopy(base))
    theirs = {n: m for n, m in twin.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)}
    assert sorted(theirs) == sorted(lora_layers(ours))  # the same targeting rule
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            theirs[name].lora_A["default"].weight.copy_(layer.lora_A)
            theirs[name].lora_B["default"].weight.copy_(layer.lora_B)
    return twin


@pytest.mark.slow  # importing peft (and transformers) takes several seconds
def test_same_outputs_and_gradients_as_peft():
    base = tiny_gpt()
    ours = copy.deepcopy(base)
    apply_lora(ours, ATTN, r=4, alpha=12.0)  # α/r = 3
    randomise_b(ours)
    twin = peft_twin(base, ours, r=4, alpha=12.0)
    x, y = ids(), ids(seed=3)
    out, out_peft = ours(x), twin(x)
    assert (out - out_peft).abs().max() <= 1e-6
    loss = torch.nn.functional.cross_entropy
    loss(out.flatten(0, 1), y.flatten()).backward()
    loss(out_peft.flatten(0, 1), y.flatten()).backward()
    peft_grads = {n: p.grad for n, p in twin.named_parameters() if p.requires_grad}
    assert len(peft_grads) == 2 * len(lora_layers(ours))  # peft freezes the same base
    for name, layer in lora_layers(ours).items():
        for ab in ("A", "B"):
            ref = peft_grads[f"{name}.lora_{ab}.default.weight"]
            got = getattr(layer, f"lora_{ab}").grad
            assert ref.abs().max() > 0
            assert (got - ref).abs().max() <= 1e-6 * max(1.0, ref.abs().max().item())
