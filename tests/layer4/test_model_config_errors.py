"""Issue 13 §4: a layer-4 model config that cannot be built is refused at construction, before
any training, with an error that names the field. Channels that groups cannot divide: the ResNet
bottleneck's grouped 3×3 and the GPT's heads (ConvNeXt's and EfficientNet's depthwise convs
take groups = channels, which always divides). Depth 0, an image too small for the stages, and
sizes below 1, for every model; then the same refusals through layer 3's pipeline."""

import pytest

from layer3_framework.schema import ConfigError
from layer3_framework.train import compose, run
from layer4_architectures.sequence.gpt import GPT
from layer4_architectures.vision.convnext import ConvNeXt
from layer4_architectures.vision.efficientnet import EfficientNet
from layer4_architectures.vision.resnet import ResNet

BOTTLENECK = {"block": "bottleneck", "widths": (64, 128, 256)}

CASES = [
    # channels not divisible by groups
    (ResNet, {**BOTTLENECK, "groups": 3}, r"groups=3"),
    (ResNet, {**BOTTLENECK, "groups": 0}, r"groups=0"),
    (ResNet, {"block": "bottleneck", "widths": (16, 32, 66)}, r"widths=\[16, 32, 66\]"),
    (ResNet, {"groups": 2}, r"groups=2: basic blocks need groups=1"),
    (GPT, {"n_embd": 48, "n_head": 5}, r"n_embd=48 must be divisible by n_head=5"),
    (GPT, {"n_embd": 48, "n_head": 0}, r"n_head must be a positive int"),
    (GPT, {"n_embd": 36, "n_head": 4}, r"head_dim 9 must be even for pos='rope'"),
    # depth 0
    (ResNet, {"blocks": (3, 0, 3)}, r"blocks=\[3, 0, 3\]"),
    (ResNet, {"blocks": (), "widths": ()}, r"widths=\[\] and blocks=\[\]"),
    (ConvNeXt, {"depths": (2, 0, 2)}, r"depths=\[2, 0, 2\]"),
    (EfficientNet, {"depth": 0.0}, r"depth=0.0"),
    (EfficientNet, {"stages": [[1, 16, 0, 1, 3]]}, r"stages\[0\]=\[1, 16, 0, 1, 3\]"),
    (GPT, {"n_layer": 0}, r"n_layer must be a positive int, got 0"),
    # an image too small for the stages
    (ResNet, {"image_size": 2}, r"image_size=2 is too small for 3 stages"),
    (ConvNeXt, {"image_size": 4}, r"image_size=4 is too small for patch=2 and 3 stages"),
    (EfficientNet, {"image_size": 16}, r"image_size=16 is too small"),
    # sizes below 1 and out-of-range rates
    (ResNet, {"in_channels": 0}, r"in_channels=0"),
    (ResNet, {"num_classes": 0}, r"num_classes=0"),
    (ResNet, {"stem_width": 0}, r"stem_width=0"),
    (ResNet, {"widths": (16, 0, 64)}, r"widths=\[16, 0, 64\]"),
    (ConvNeXt, {"dims": (32, 0, 128)}, r"dims=\[32, 0, 128\]"),
    (ConvNeXt, {"in_channels": 0}, r"in_channels=0"),
    (ConvNeXt, {"num_classes": 0}, r"num_classes=0"),
    (EfficientNet, {"in_channels": 0}, r"in_channels=0"),
    (EfficientNet, {"stem_stride": 0}, r"stem_stride=0"),
    (EfficientNet, {"head_channels": 0}, r"head_channels=0"),
    (EfficientNet, {"dropout": 1.0}, r"dropout=1.0"),
    (EfficientNet, {"se_ratio": -0.5}, r"se_ratio=-0.5"),
    (GPT, {"block_size": 0}, r"block_size must be a positive int"),
    (GPT, {"n_layer": True}, r"n_layer must be a positive int, got True"),
]


def _build(model, kwargs):
    if model is GPT:
        return GPT(64, **{"n_layer": 1, "n_embd": 32, "n_head": 2, **kwargs})
    if model is EfficientNet:
        return EfficientNet(**{"image_size": 32, "width": 0.25, "depth": 0.25, **kwargs})
    return model(**kwargs)


@pytest.mark.parametrize(("model", "kwargs", "match"), CASES)
def test_a_config_that_cannot_be_built_names_the_field(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(model, kwargs)


@pytest.mark.parametrize("model", [ResNet, ConvNeXt, EfficientNet, GPT])
def test_the_defaults_build(model):
    _build(model, {})  # the checks refuse only what cannot be built


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["experiment=gpt_shakespeare_char", "model.n_head=5"], r"n_embd=128 .* n_head=5"),
        (["experiment=cifar_resnet20", "model.blocks=[3,0,3]"], r"blocks=\[3, 0, 3\]"),
    ],
)
def test_the_pipeline_refuses_before_the_first_step(tmp_path, overrides, match):
    cfg = compose([*overrides, "data.source=synthetic", "trainer.max_steps=2", "logger=jsonl"])
    with pytest.raises(ConfigError, match=rf"model: .* refused its config: .*{match}"):
        run(cfg, tmp_path / "run", device="cpu", progress=False)
    run_dir = tmp_path / "run"
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()
