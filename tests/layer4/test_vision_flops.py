"""The FLOP counter against torch.utils.flop_counter.FlopCounterMode on the same models, a
single convolution against its closed form, parameters against Σ numel, and ResNet-20's
published ≈41M multiply-adds."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from layer4_architectures.vision.convnext import ConvNeXt
from layer4_architectures.vision.efficientnet import EfficientNet
from layer4_architectures.vision.flops import count_flops, count_parameters
from layer4_architectures.vision.resnet import ResNet, cifar_resnet


def torch_flops(model, shape):
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape))
    return counter.get_total_flops()


MODELS = {
    "resnet20": lambda: cifar_resnet(3),
    "resnext_bottleneck": lambda: ResNet(
        widths=(32, 64), blocks=(1, 2), block="bottleneck", shortcut="conv", groups=2
    ),  # fmt: skip
    "convnext": lambda: ConvNeXt(),
    "efficientnet": lambda: EfficientNet(width=0.5, depth=0.5, stem_stride=1),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_counter_equals_torch_flop_counter(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    report = count_flops(model, (2, 3, 32, 32))
    assert report.total == torch_flops(model, (2, 3, 32, 32))
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert report.total == sum(report.per_layer.values())


def test_a_convolution_against_its_closed_form():
    conv = torch.nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=3)
    report = count_flops(torch.nn.Sequential(conv), (4, 6, 9, 9))
    assert report.total == 2 * 4 * 5 * 5 * 12 * (6 // 3) * 3 * 3  # out 5x5
    assert report.per_layer == {"0": report.total}


def test_resnet20_has_about_41m_multiply_adds():
    macs = count_flops(cifar_resnet(3), (1, 3, 32, 32)).total / 2
    assert 40e6 < macs < 42e6  # He et al. 2015; ResNet-56: ~125M
    assert 124e6 < count_flops(cifar_resnet(9), (1, 3, 32, 32)).total / 2 < 127e6


def test_parameters_trainable_only_and_bad_shape():
    m = cifar_resnet(1)
    m.head.weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == count_parameters(m) - 640
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(m, (0, 3, 32, 32))
