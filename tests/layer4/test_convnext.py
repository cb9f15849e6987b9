"""ConvNeXt: the published ConvNeXt-T parameter count, the block against a manual computation
(depthwise conv, LayerNorm over channels by its formula, GELU, the two linears, layer scale),
stochastic depth's expectation, and bad configs."""

import math

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.vision.convnext import ConvNeXt, ConvNeXtBlock, LayerNorm2d, drop_path


def test_convnext_tiny_has_the_published_parameter_count():
    m = ConvNeXt(image_size=224, num_classes=1000, dims=(96, 192, 384, 768), depths=(3, 3, 9, 3),
                 patch=4)  # fmt: skip
    assert sum(p.numel() for p in m.parameters()) == 28_589_128  # Liu et al. 2022 / official


def _layer_norm_formula(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance, as LayerNorm uses
    return (x - mu) / torch.sqrt(var + eps) * w + b


def test_block_matches_a_manual_computation():
    torch.manual_seed(0)
    blk = ConvNeXtBlock(8, layer_scale=0.5)
    blk.norm.weight.data.normal_()
    blk.norm.bias.data.normal_()
    x = torch.randn(2, 8, 6, 6)
    h = F.conv2d(x, blk.dwconv.weight, blk.dwconv.bias, padding=3, groups=8)
    h = h.permute(0, 2, 3, 1)
    h = _layer_norm_formula(h, blk.norm.weight, blk.norm.bias, 1e-6)
    h = h @ blk.fc1.weight.T + blk.fc1.bias
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
    h = (h @ blk.fc2.weight.T + blk.fc2.bias) * 0.5
    torch.testing.assert_close(blk(x), x + h.permute(0, 3, 1, 2), rtol=1e-4, atol=1e-5)


def test_channels_first_layer_norm_normalises_over_channels():
    torch.manual_seed(0)
    ln = LayerNorm2d(5, eps=1e-6)
    x = torch.randn(2, 5, 3, 4)
    want = _layer_norm_formula(x.permute(0, 2, 3, 1), ln.weight, ln.bias, 1e-6)
    torch.testing.assert_close(ln(x), want.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)


def test_drop_path_keeps_the_expectation_and_is_off_in_eval():
    torch.manual_seed(0)
    x = torch.ones(20000, 3, 2, 2)
    y = drop_path(x, 0.25, training=True)
    per_sample = y[:, 0, 0, 0]
    kept = per_sample[per_sample != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.75))  # scaled by 1/(1-p)
    assert torch.equal(y, per_sample.view(-1, 1, 1, 1).expand_as(y))  # whole samples dropped
    assert abs(float((per_sample == 0).float().mean()) - 0.25) < 0.015  # ~4 sigma
    assert abs(float(y.mean()) - 1.0) < 0.03
    assert torch.equal(drop_path(x, 0.25, training=False), x)


def test_stochastic_depth_rates_rise_linearly_and_shapes():
    m = ConvNeXt(drop_path=0.3, depths=(2, 2, 2))
    rates = [b.drop for s in m.stages for b in s]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 6))
    assert m.features(torch.randn(2, 3, 32, 32)).shape == (2, 128, 4, 4)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"depths": (2, 0, 2)}, "depths"),
        ({"dims": (32, 64)}, "dims"),
        ({"image_size": 4}, "image_size"),
        ({"patch": 0}, "patch"),
        ({"drop_path": 1.0}, "drop_path"),
    ],
)
def test_a_config_that_cannot_be_built_names_its_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ConvNeXt(**kwargs)
