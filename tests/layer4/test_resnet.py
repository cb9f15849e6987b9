"""ResNet: parameter counts against closed forms and the published counts, blocks against a
manual computation with torch's functional ops, the shortcuts, zero-init, and bad configs."""

import pytest
import torch
import torch.nn.functional as F

from layer3_framework.schema import ConfigError
from layer3_framework.train import compose, run
from layer4_architectures.vision.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    cifar_resnet,
    resnet18,
)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def cifar_closed_form(n, classes=10):
    """Stem conv + BN, then per basic block two 3x3 convs and two BNs (option A: no shortcut
    weights), then the linear head."""
    total = 3 * 16 * 9 + 2 * 16
    c = 16
    for w in (16, 32, 64):
        for _ in range(n):
            total += c * w * 9 + w * w * 9 + 4 * w
            c = w
    return total + 64 * classes + classes


@pytest.mark.parametrize(("n", "published"), [(3, 0.27), (9, 0.85)])
def test_cifar_resnet_parameters_match_closed_form_and_paper(n, published):
    m = cifar_resnet(n)
    assert n_params(m) == cifar_closed_form(n)
    assert round(n_params(m) / 1e6, 2) == published  # He et al. 2015, Table 6
    assert 6 * n + 2 == 2 + sum(2 * len(s) for s in m.stages)  # conv layers + head: 6n+2


def test_resnet18_cifar_has_the_published_11_17m_parameters():
    assert n_params(resnet18()) == 11_173_962


def _conv_bn(x, seq):
    conv, bn = seq
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, 1, conv.groups)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, bn.eps)


def _randomise_bn(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.normal_()
            mod.bias.data.normal_()


def test_basic_block_with_pad_shortcut_matches_manual_computation():
    torch.manual_seed(0)
    block = BasicBlock(8, 16, stride=2, kind="pad").eval()
    _randomise_bn(block)
    x = torch.randn(2, 8, 10, 10)
    h = F.relu(_conv_bn(x, block.branch[0]))
    h = _conv_bn(h, block.branch[2])
    s = torch.zeros(2, 16, 5, 5)
    s[:, :8] = x[:, :, ::2, ::2]  # option A: subsample, zero-pad the new channels
    torch.testing.assert_close(block(x), F.relu(h + s))


def test_bottleneck_with_conv_shortcut_matches_manual_computation():
    torch.manual_seed(0)
    block = Bottleneck(16, 32, stride=2, kind="conv", groups=2).eval()
    _randomise_bn(block)
    x = torch.randn(2, 16, 8, 8)
    b = block.branch
    h = F.relu(_conv_bn(x, b[0]))
    h = F.relu(_conv_bn(h, b[2]))
    h = _conv_bn(h, b[4])
    torch.testing.assert_close(block(x), F.relu(h + _conv_bn(x, block.shortcut)))
    assert b[2][0].groups == 2 and b[2][0].in_channels == 8  # width/4 = 8 channels, 2 groups


def test_zero_init_residual_makes_every_block_the_identity_map():
    torch.manual_seed(0)
    m = cifar_resnet(2, zero_init_residual=True)
    x = F.relu(torch.randn(4, 16, 8, 8))  # a post-ReLU input: identity blocks leave it unchanged
    for block in m.stages[0]:
        torch.testing.assert_close(block(x), x)
    assert all(float(b.last_bn().weight.detach().abs().sum()) == 0 for s in m.stages for b in s)
    assert float(cifar_resnet(2).stages[0][0].last_bn().weight.detach().sum()) > 0  # default


def test_forward_shapes_and_channels_last_gives_the_same_numbers():
    torch.manual_seed(0)
    a = cifar_resnet(1).eval()
    b = cifar_resnet(1, channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 32, 32)
    assert a.features(x).shape == (3, 64, 8, 8)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)
    assert b.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"blocks": (3, 0, 3)}, "blocks"),
        ({"widths": (16, 32)}, "widths"),
        ({"block": "bottleneck", "widths": (16, 32, 64), "groups": 3}, "groups"),
        ({"block": "bottleneck", "widths": (18, 32, 64)}, "widths"),
        ({"groups": 2}, "groups"),
        ({"image_size": 3}, "image_size"),
        ({"block": "wide"}, "block"),
    ],
)
def test_a_config_that_cannot_be_built_names_its_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ResNet(**kwargs)


def test_the_pipeline_refuses_a_bad_resnet_in_one_line_naming_the_field(tmp_path):
    cfg = compose(
        ["model=resnet20", "model.blocks=[3,0,3]", "data.source=synthetic", "data.n_train=16",
         "data.n_test=16", "trainer.max_steps=1", "logger=jsonl", "trainer.progress=false"]
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"blocks=\[3, 0, 3\]") as info:
        run(cfg, tmp_path / "bad")
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing trained
