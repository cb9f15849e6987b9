"""The U-Net denoiser: shapes, the time and class embeddings reach the output, the null class,
the parameter count against a count from the architecture, and constructor validation."""

import math

import pytest
import torch
from torch import nn

from layer4_architectures.generative.unet import UNet, UNetConfig, timestep_embedding


def _unet(**kw):
    torch.manual_seed(0)
    model = UNet(**{"base_channels": 8, "groups": 4, "heads": 2, **kw})
    nn.init.normal_(model.out.weight, std=0.1)  # the zero-initialised output would hide inputs
    return model.eval()


@pytest.mark.parametrize(("c", "size"), [(1, 28), (3, 32)])
def test_output_has_the_input_shape(c, size):
    model = _unet(in_channels=c, image_size=size)
    x = torch.randn(3, c, size, size)
    assert model(x, torch.tensor([1, 50, 999]), torch.tensor([0, 5, 9])).shape == x.shape


def test_zero_initialised_output_predicts_zero_noise():
    model = UNet(base_channels=8, groups=4, heads=2)
    out = model(torch.randn(2, 1, 28, 28), torch.tensor([3, 7]))
    assert torch.equal(out, torch.zeros_like(out))


def test_timestep_embedding_is_the_sinusoid():
    t, d = torch.tensor([0, 1, 17, 999]), 8
    emb = timestep_embedding(t, d)
    for row, tv in zip(emb, t.tolist(), strict=True):
        want = [math.sin(tv * 10000 ** (-i / 4)) for i in range(4)]
        want += [math.cos(tv * 10000 ** (-i / 4)) for i in range(4)]
        torch.testing.assert_close(row, torch.tensor(want), rtol=1e-4, atol=1e-4)


def test_time_and_class_change_the_output_and_none_is_the_null_class():
    model = _unet()
    x = torch.randn(2, 1, 28, 28)
    y = torch.tensor([3, 3])
    with torch.no_grad():
        base = model(x, torch.tensor([10, 10]), y)
        assert (base - model(x, torch.tensor([500, 500]), y)).abs().max() > 1e-3
        assert (base - model(x, torch.tensor([10, 10]), torch.tensor([4, 4]))).abs().max() > 1e-3
        null = model(x, torch.tensor([10, 10]), torch.tensor([10, 10]))  # index 10: the null class
        torch.testing.assert_close(model(x, torch.tensor([10, 10]), None), null)
        assert (null - base).abs().max() > 1e-3


def test_unconditional_model_has_no_class_embedding():
    model = _unet(num_classes=0)
    assert model.class_emb is None
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 6])
    torch.testing.assert_close(model(x, t), model(x, t, None))


def _count_resblock(c_in, c_out, d):
    n = 2 * c_in + (9 * c_in * c_out + c_out) + (d * c_out + c_out) + 2 * c_out
    n += 9 * c_out * c_out + c_out
    return n + (c_in * c_out + c_out if c_in != c_out else 0)


def test_parameter_count_matches_the_architecture():
    b, classes = 8, 10
    c1, c2, c3, d = b, 2 * b, 2 * b, 4 * b
    conv3 = lambda i, o: 9 * i * o + o  # noqa: E731
    want = (b * d + d) + (d * d + d)  # time MLP
    want += (classes + 1) * d + conv3(1, c1)  # class embedding, stem
    want += _count_resblock(c1, c1, d) + conv3(c1, c1) + _count_resblock(c1, c2, d)
    want += conv3(c2, c2) + _count_resblock(c2, c3, d)
    want += 2 * _count_resblock(c3, c3, d) + 2 * c3 + 4 * (c3 * c3 + c3)  # mid blocks, attention
    want += _count_resblock(2 * c3, c3, d) + conv3(c3, c2) + _count_resblock(2 * c2, c2, d)
    want += conv3(c2, c1) + _count_resblock(2 * c1, c1, d) + 2 * c1 + conv3(c1, 1)
    model = UNet(base_channels=b, groups=4, heads=2)
    assert sum(p.numel() for p in model.parameters()) == want


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_channels": 12, "groups": 8}, "groups=8 must divide"),
        ({"image_size": 30}, r"image_size must be a multiple of 4 \(two halvings\), got 30"),
        ({"heads": 3}, "heads=3 must divide"),
        ({"channel_mults": [1, 2]}, "channel_mults must be 3 positive"),
        ({"num_classes": -1}, "num_classes must be >= 0, got -1"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"timesteps": 0}, "timesteps must be >= 1, got 0"),
    ],
)
def test_bad_configs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**{"base_channels": 8, "groups": 4, "heads": 2, **kwargs})


def test_bad_inputs_name_the_shape():
    model = _unet()
    with pytest.raises(ValueError, match=r"expects \(B, 1, 28, 28\) images, got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="class labels have shape"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([1]))
