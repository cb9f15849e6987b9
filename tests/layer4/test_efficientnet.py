"""EfficientNet: B0's published parameter count, the published B2/B3 stem and head widths from
channel rounding, compound scaling's multipliers and its ≈2^φ FLOP growth, MBConv and SE
against a manual computation, and bad configs."""

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.vision.efficientnet import (
    ALPHA,
    BETA,
    GAMMA,
    EfficientNet,
    MBConv,
    compound_scaling,
    round_channels,
)
from layer4_architectures.vision.flops import count_flops


def test_b0_has_the_published_parameter_count():
    m = EfficientNet(image_size=224, num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == 5_288_548  # Tan & Le 2019: 5.3M


def test_channel_rounding_gives_the_published_b2_b3_widths():
    assert (round_channels(32 * 1.1), round_channels(1280 * 1.1)) == (32, 1408)  # B2
    assert (round_channels(32 * 1.2), round_channels(1280 * 1.2)) == (40, 1536)  # B3
    assert round_channels(16 * 0.5) == 8 and round_channels(3.0) == 8  # never below the divisor


@pytest.mark.parametrize("phi", [0, 1, 2, 3])
def test_compound_scaling_multipliers(phi):
    s = compound_scaling(phi)
    assert (s.depth, s.width) == pytest.approx((ALPHA**phi, BETA**phi))
    assert abs(s.resolution - 224 * GAMMA**phi) <= 4 and s.resolution % 8 == 0


def test_flops_grow_as_width_squared_and_resolution_squared():
    """FLOPs ∝ d·w²·r²: α·β²·γ² ≈ 2 makes one step of φ about double them. Width and resolution
    are checked on the counted FLOPs (up to channel rounding and ceil'd feature-map sizes)."""
    assert ALPHA * BETA**2 * GAMMA**2 == pytest.approx(2, rel=0.05)
    base = count_flops(EfficientNet(image_size=128), (1, 3, 128, 128)).total
    assert 0.37e9 < count_flops(EfficientNet(image_size=224), (1, 3, 224, 224)).total / 2 < 0.41e9
    wide = count_flops(EfficientNet(image_size=128, width=1.5), (1, 3, 128, 128)).total
    assert wide / base == pytest.approx(1.5**2, rel=0.1)
    big = count_flops(EfficientNet(image_size=256), (1, 3, 256, 256)).total
    assert big / base == pytest.approx(2.0**2, rel=0.05)
    deep = count_flops(EfficientNet(image_size=128, depth=2.0), (1, 3, 128, 128)).total
    assert deep / base == pytest.approx(2.0, rel=0.2)  # stem/head do not repeat


def test_mbconv_matches_a_manual_computation():
    torch.manual_seed(0)
    blk = MBConv(8, 8, expand=4, kernel=3, stride=1).eval()
    for m in blk.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 8, 6, 6)
    b = blk.branch

    def bn(h, m):
        return F.batch_norm(h, m.running_mean, m.running_var, m.weight, m.bias, False, 0, m.eps)

    def silu(h):
        return h * torch.sigmoid(h)

    h = silu(bn(F.conv2d(x, b[0][0].weight), b[0][1]))  # expand 8 -> 32
    h = silu(bn(F.conv2d(h, b[1][0].weight, padding=1, groups=32), b[1][1]))  # depthwise
    se = b[2]
    s = h.mean((2, 3), keepdim=True)
    g = torch.sigmoid(F.conv2d(silu(F.conv2d(s, se.reduce.weight, se.reduce.bias)),
                               se.expand.weight, se.expand.bias))  # fmt: skip
    assert se.reduce.out_channels == 2  # ⌈0.25 · C_in⌉
    h = bn(F.conv2d(h * g, b[3].weight), b[4])
    torch.testing.assert_close(blk(x), x + h, rtol=1e-4, atol=1e-5)


def test_cifar_configuration_shapes():
    m = EfficientNet(width=0.5, depth=0.5, stem_stride=1)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert m.features(torch.randn(1, 3, 32, 32)).shape[-1] == 2  # 32 / 16


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0.0}, "width"),
        ({"stages": [(6, 24, 0, 2, 3)]}, "stages"),
        ({"stages": [(6, 24, 1, 2, 4)]}, "stages"),
        ({"image_size": 16}, "image_size"),
    ],
)
def test_a_config_that_cannot_be_built_names_its_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EfficientNet(**kwargs)
