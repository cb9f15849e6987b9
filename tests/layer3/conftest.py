"""Small models and data shared by the layer-3 tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer3_framework import ImageDataset, ImageTransform, build_loader


def synthetic_images(n: int, seed: int, c: int = 3, side: int = 8, classes: int = 4):
    """Learnable images: a fixed prototype per class plus noise."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(99).uniform(0, 255, (classes, c, side, side))
    y = rng.integers(0, classes, n)
    x = np.clip(protos[y] + rng.normal(0, 30, (n, c, side, side)), 0, 255).astype(np.uint8)
    return x, y


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The models here are tiny: a second OpenMP thread only spins (and, under pytest-xdist on
    2 cores, fights the other worker), making small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_loaders():
    """(train_loader, eval_loader) over 8x8 RGB synthetic images, augmented."""

    def make(seed: int = 0, batch_size: int = 16, augment: bool = True):
        t = ImageTransform([0.5] * 3, [0.25] * 3, crop_padding=1, flip=True)
        x, y = synthetic_images(96, seed=1)
        xe, ye = synthetic_images(48, seed=2)
        train = ImageDataset(x, y, t, augment=augment, seed=seed)
        test = ImageDataset(xe, ye, t)
        return (
            build_loader(train, batch_size, shuffle=True, seed=seed, drop_last=True),
            build_loader(test, 48, shuffle=False, seed=seed),
        )

    return make


@pytest.fixture
def tiny_cnn():
    """A factory of 2-block CNNs for (B, 3, 8, 8) images, 4 classes."""
    from layer3_framework.ports import CifarCNN

    return lambda: CifarCNN(3, widths=(4, 8), num_classes=4, image_size=8)
