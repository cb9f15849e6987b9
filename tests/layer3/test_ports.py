"""The PyTorch twins against the scratch models (float64): outputs and gradients to 1e-10, and
100 SGD steps side by side to 1e-8 — through the ``torch_ports`` deliverable."""

import numpy as np
import pytest
import torch

import layer1_autograd as l1
import layer2_primitives as l2
from layer0_math.lab import run_deliverable
from layer3_framework import deliverables
from layer3_framework.ports import (
    ACTIVATIONS,
    MLP,
    compare_outputs_and_grads,
    port,
    port_cases,
    twin_of,
)


@pytest.mark.parametrize("case", port_cases(seed=1, n_batches=1), ids=lambda c: c.name)
def test_outputs_and_gradients_match_in_float64(case):
    out_diff, grad_diff = compare_outputs_and_grads(case)
    assert out_diff <= 1e-10 and grad_diff <= 1e-10, (out_diff, grad_diff)


def test_attention_with_a_key_padding_mask_matches():
    rng = np.random.default_rng(0)
    scratch = l2.MultiHeadAttention(8, 2, rng=rng, dtype=np.float64)
    x = rng.normal(size=(2, 5, 8))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    expected = scratch(l1.Tensor(x), key_padding_mask=pad).data
    got = port(scratch)(torch.from_numpy(x), key_padding_mask=torch.from_numpy(pad))
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-12, rtol=0)


def test_port_keeps_the_dtype_and_rejects_what_it_cannot_port():
    rng = np.random.default_rng(0)
    assert port(l1.MLP([3, 2], rng=rng, dtype=np.float32)).layers[0].weight.dtype == torch.float32
    with pytest.raises(TypeError, match="no PyTorch twin for Embedding"):
        twin_of(l2.Embedding(4, 2, rng=rng))


@pytest.mark.parametrize("activation", list(l1.nn.ACTIVATIONS))
def test_every_layer1_activation_has_a_twin_that_computes_it(activation):
    """The torch activations are layer 1's names, each computing what layer 1's does."""
    assert list(ACTIVATIONS) == list(l1.nn.ACTIVATIONS)
    rng = np.random.default_rng(0)
    scratch = l1.MLP([4, 6, 3], activation, rng=rng, dtype=np.float64)
    x = 3 * rng.normal(size=(5, 4))  # wide enough to reach every activation's curved part
    got = port(scratch)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, scratch(l1.Tensor(x)).data, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="'swish'.*expected one of"):
        MLP([4, 3], "swish")


@pytest.mark.slow
def test_torch_ports_deliverable_meets_its_targets(tmp_path):
    m = run_deliverable(deliverables.torch_ports, runs_dir=tmp_path)
    assert m["max_abs_diff"] <= 1e-10
    assert m["trajectory_max_diff"] <= 1e-8
    assert m["min_trajectory_weight_change"] > 0.05  # the weights really moved
    table = (next(tmp_path.rglob("ports.md"))).read_text()
    for name in ("mlp", "cifar_cnn", "charlm_lstm", "charlm_gru", "attention"):
        assert f"| {name} |" in table
