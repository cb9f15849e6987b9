"""Module/Linear/MLP/SGD against torch.nn and torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import MLP, SGD, F, Linear, Module, Tensor


def test_linear_init_range_layout_and_dtype():
    lin = Linear(400, 30, rng=np.random.default_rng(0))
    assert lin.weight.shape == (30, 400) and lin.bias.shape == (30,)
    assert lin.weight.dtype == np.float32
    bound = 1 / np.sqrt(400)
    assert np.abs(lin.weight.data).max() <= bound
    # U(-b, b) has variance b²/3: check the sample variance of 12,000 draws to 5 %.
    np.testing.assert_allclose(lin.weight.data.var(), bound**2 / 3, rtol=0.05)
    assert Linear(3, 2, bias=False, rng=np.random.default_rng(0)).bias is None


def _torch_mlp(ours: MLP) -> torch.nn.Sequential:
    mods: list[torch.nn.Module] = []
    for i, layer in enumerate(ours.layers):
        lin = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(layer.weight.data))
            lin.bias.copy_(torch.tensor(layer.bias.data))
        mods.append(lin)
        if i < len(ours.layers) - 1:
            mods.append(torch.nn.Tanh())
    return torch.nn.Sequential(*mods)


def test_mlp_and_sgd_track_torch_over_training_steps():
    rng = np.random.default_rng(0)
    ours = MLP([6, 8, 8, 3], activation="tanh", rng=rng, dtype=np.float64)
    ref = _torch_mlp(ours)
    opt = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, y = rng.normal(size=(16, 6)), rng.integers(0, 3, 16)
    for _ in range(5):
        opt.zero_grad()
        ref_opt.zero_grad()
        loss = F.cross_entropy(ours(Tensor(x)), y)
        ref_loss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        ref_loss.backward()
        opt.step()
        ref_opt.step()
        np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-12)
    for p, r in zip(ours.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(p.data, r.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_parameters_names_state_dict_and_modes():
    class Net(Module):
        def __init__(self):
            self.body = MLP([3, 4, 2], rng=np.random.default_rng(0), dtype=np.float64)
            self.scale = Tensor(np.ones(2), requires_grad=True)
            self.constant = Tensor(np.ones(2))

        def forward(self, x):
            return self.body(x) * self.scale

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "body.layers.0.weight",
        "body.layers.0.bias",
        "body.layers.1.weight",
        "body.layers.1.bias",
        "scale",
    ]
    assert len(net.parameters()) == 5
    net(Tensor(np.ones((2, 3)))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    assert not net.training and not net.body.layers[1].training
    net.train()
    assert net.body.layers[0].training

    state = net.state_dict()
    other = Net()
    for p in other.parameters():
        p.data[...] = 0
    other.load_state_dict(state)
    for a, b in zip(net.parameters(), other.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(KeyError, match="missing.*scale"):
        other.load_state_dict({k: v for k, v in state.items() if k != "scale"})
    with pytest.raises(KeyError, match="unexpected.*extra"):
        other.load_state_dict({**state, "extra": np.ones(1)})
    with pytest.raises(ValueError, match=r"scale.*\(3,\).*\(2,\)"):
        other.load_state_dict({**state, "scale": np.ones(3)})


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="activation.*swish"):
        MLP([2, 2], activation="swish", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="lr"):
        SGD([Tensor(np.ones(1), requires_grad=True)], lr=-1.0)


def test_a_shared_parameter_is_listed_once():
    class Tied(Module):
        def __init__(self):
            self.a = Linear(3, 3, rng=np.random.default_rng(0))
            self.b = Linear(3, 3, rng=np.random.default_rng(1))
            self.b.weight = self.a.weight

    names = [n for n, _ in Tied().named_parameters()]
    assert names == ["a.weight", "a.bias", "b.bias"]
