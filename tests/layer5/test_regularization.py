"""RegCNN against a functional re-statement with the same weights (F.conv2d, F.batch_norm,
F.layer_norm + a per-channel affine, F.max_pool2d, F.linear), its norm and dropout switches, its
parameter count against the formula and a hand count, and its bad-input errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layer5_training.regularization import RegCNN, regcnn_params

SIZES = {"in_channels": 3, "num_classes": 10, "image_size": 8, "widths": (4, 6), "hidden": 5}


def _randomised(norm: str, dropout: float = 0.0) -> RegCNN:
    """A RegCNN whose every parameter and BatchNorm running statistic is random (so an affine or
    a running mean that is ignored shows)."""
    torch.manual_seed(0)
    model = RegCNN(**SIZES, norm=norm, dropout=dropout).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _reference(model: RegCNN, x: torch.Tensor, norm: str, training: bool) -> torch.Tensor:
    """The net written out with torch.nn.functional from the model's own tensors."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    for i, conv in enumerate(convs):
        x = F.conv2d(x, conv.weight, conv.bias, padding=1)
        if norm == "batch":
            bn = norms[i]
            mean, var = bn.running_mean.clone(), bn.running_var.clone()
            x = F.batch_norm(x, mean, var, bn.weight, bn.bias, training=training, eps=bn.eps)
        elif norm == "layer":  # LN over (C, H, W) per sample, then a per-channel affine
            gn = norms[i]
            x = F.layer_norm(x, x.shape[1:], eps=gn.eps)
            x = x * gn.weight.view(1, -1, 1, 1) + gn.bias.view(1, -1, 1, 1)
        x = F.max_pool2d(F.relu(x), 2)
    fc1, fc2 = [m for m in model.head if isinstance(m, nn.Linear)]
    return F.linear(F.relu(F.linear(x.flatten(1), fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


@pytest.mark.parametrize(
    ("norm", "kind"), [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm), ("none", nn.Identity)]
)
def test_each_norm_builds_the_module_it_claims(norm, kind):
    model = RegCNN(**SIZES, norm=norm)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    after = [model.features[i + 1] for i, m in enumerate(model.features) if m in convs]
    assert [type(m) for m in after] == [kind, kind]
    if norm == "layer":
        assert all(m.num_groups == 1 for m in after)  # GroupNorm(1, C) is LayerNorm over (C,H,W)
    assert all((c.bias is not None) == (norm == "none") for c in convs)  # a norm's β replaces it


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize("training", [True, False])
def test_forward_matches_the_functional_net_with_the_same_weights(norm, training):
    model = _randomised(norm)
    x = torch.randn(7, 3, 8, 8, dtype=torch.float64)
    expected = _reference(model, x, norm, training)
    model.train(training)
    torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", ["layer", "none"])  # (BatchNorm's own train/eval differ)
def test_dropout_zero_is_the_identity_and_dropout_is_off_in_eval(norm):
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    plain = _randomised(norm, dropout=0.0)
    dropped = _randomised(norm, dropout=0.5)  # the same weights (same seed)
    assert torch.equal(plain.train()(x), plain.eval()(x))
    assert torch.equal(dropped.eval()(x), plain.eval()(x))
    assert not torch.allclose(dropped.train()(x), plain.eval()(x))
    assert [m.p for m in dropped.head if isinstance(m, nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
@pytest.mark.parametrize(("widths", "image_size"), [((4, 6), 8), ((8,), 32), ((3, 5, 7), 16)])
def test_parameter_count_matches_the_formula(norm, widths, image_size):
    sizes = {**SIZES, "widths": widths, "image_size": image_size}
    model = RegCNN(**sizes, norm=norm)
    assert sum(p.numel() for p in model.parameters()) == regcnn_params(**sizes, norm=norm)


def test_parameter_count_by_hand():
    # convs 9*3*4 + 9*4*6 = 324, BatchNorm γ, β: 2*(4 + 6) = 20; F = 6 * 2 * 2 = 24;
    # head 24*5 + 5 + 5*10 + 10 = 185
    assert regcnn_params(**SIZES, norm="batch") == 324 + 20 + 185
    assert regcnn_params(**SIZES, norm="none") == 324 + 10 + 185  # conv biases instead


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "group"}, "unknown norm 'group'"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"widths": ()}, "widths"),
        ({"image_size": 12, "widths": (4, 4, 4)}, "image_size=12"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RegCNN(**{**SIZES, **kwargs})
