"""The generative yardstick on known cases: the class-histogram entropy and confident share in
closed form, features equal to the classifier's penultimate activations computed by hand, FID
near 0 for two draws of one distribution and larger for a shifted one, the floor, bad input."""

import math

import numpy as np
import pytest
import torch

from layer0_math.lab import MissingArtifactError
from layer3_framework.ports import CifarCNN
from layer4_architectures.generative.yardstick import (
    Yardstick,
    check_images01,
    class_entropy,
    confident_share,
)


def _digits(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Blobby random images in [0, 1]: a smooth random field, optionally brightened."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 7, 7, generator=g)
    x = torch.nn.functional.interpolate(x, size=28, mode="bilinear", align_corners=False)
    return (x + shift).clamp(0, 1)


@pytest.fixture(scope="module")
def stick():
    torch.manual_seed(0)
    model = CifarCNN(in_channels=1, widths=(4, 8, 8, 8), num_classes=10, image_size=28)
    return Yardstick(model=model, reference=_digits(400, 1), real_pool=_digits(400, 2))


def test_class_entropy_is_one_for_uniform_and_zero_for_one_class():
    assert class_entropy(np.full(10, 7)) == pytest.approx(1.0, abs=1e-12)
    assert class_entropy(np.eye(10)[3] * 50) == 0.0
    assert class_entropy([5, 5, 0, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(
        math.log(2) / math.log(10)
    )


def test_confident_share_counts_rows_at_or_above_the_threshold():
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    assert confident_share(probs) == 0.5


def test_features_are_the_classifier_penultimate_activations(stick):
    x = _digits(16, 3)
    by_hand = stick.model.features((x - stick.mean) / stick.std).flatten(1)  # (N, 8)
    torch.testing.assert_close(stick.features(x), by_hand.double(), rtol=1e-5, atol=1e-6)


def test_same_distribution_scores_near_the_floor_and_a_shifted_one_far(stick):
    n = 200
    same = stick.score(_digits(n, 7))
    shifted = stick.score(_digits(n, 7, shift=0.4))
    floor = stick.floor(n)
    assert same["n"] == n and sum(same["class_histogram"]) == n
    assert shifted["fid"] > 5 * max(same["fid"], floor["fid_floor"])
    assert shifted["kid"] > 5 * abs(same["kid"])
    assert same["fid"] < 2 * floor["fid_floor"] + 1e-6  # two draws, one distribution: the floor
    assert stick.score(stick.reference[:n])["fid"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(4, 3, 28, 28), r"\(4, 3, 28, 28\)"),
        (torch.rand(4, 28, 28), r"\(4, 28, 28\)"),
        (torch.rand(4, 1, 28, 28) * 2 - 1, r"\[0, 1\].*got values in \[-"),
        (torch.full((4, 1, 28, 28), float("nan")), "nan"),
    ],
)
def test_images_of_the_wrong_shape_or_range_are_refused(images, match):
    with pytest.raises(ValueError, match=match):
        check_images01(images)


def test_more_samples_than_reference_images_is_refused(stick):
    with pytest.raises(ValueError, match="n=401 exceeds the 400"):
        stick.score(_digits(401, 0))
    with pytest.raises(ValueError, match=r"n must be in \[2, 400\].*got 0"):
        stick.floor(0)


def test_from_runs_without_a_classifier_names_the_command(tmp_path):
    with pytest.raises(MissingArtifactError, match="make layer4"):
        Yardstick.from_runs(runs_dir=tmp_path)
