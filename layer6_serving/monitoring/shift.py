"""Input shifts: what changes when the world the camera sees is not the one it was trained on.

Three shifts of an image ``x`` in ``[0, 1]`` with a strength ``s`` in ``(0, 1]`` (1 = no change):

    dark       x' = s · x                         a dimmer scene, an under-exposed sensor
    contrast   x' = m + s · (x − m)               haze, a washed-out lens (m: the image's
                                                  per-channel mean)
    tint       x' = (s · x_r, s · x_g, x_b)       a blue colour cast (white balance gone wrong)

They serve twice: the retraining demo sends shifted CIFAR-10 test images as traffic (the
drift the monitor must see), and :class:`ShiftedImageData`, a layer-3 data module, trains the
replacement model on a mix of original and shifted training images, so that the retrained
model keeps the original distribution and learns the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from layer3_framework.data import DataBundle, ImageData, ImageDataset

SHIFTS = ("dark", "contrast", "tint")
CHUNK = 4096  # images shifted at a time (float32 copies)


def shift_images(images: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """``images`` (N, 3, H, W) in [0, 1] shifted by ``kind`` at ``strength`` (float32)."""
    check_shift(kind, strength)
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got shape {x.shape}")
    if kind == "dark":
        return x * strength
    if kind == "contrast":
        mean = x.mean(axis=(2, 3), keepdims=True)
        return mean + strength * (x - mean)
    gains = np.array([strength, strength, 1.0], dtype=np.float32)[None, :, None, None]
    return x * gains


def shift_uint8(images: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """The same shift on uint8 images (N, 3, H, W), rounded back to uint8, in chunks."""
    out = np.empty_like(images)
    for start in range(0, len(images), CHUNK):
        part = images[start : start + CHUNK].astype(np.float32) / 255
        out[start : start + CHUNK] = np.round(shift_images(part, kind, strength) * 255)
    return out


def check_shift(kind: str, strength: float) -> None:
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; expected one of {list(SHIFTS)}")
    if not 0 < strength <= 1:
        raise ValueError(f"shift strength must be in (0, 1], got {strength}")


@dataclass(kw_only=True)
class ShiftedImageData(ImageData):
    """:class:`~layer3_framework.data.ImageData` with a random ``fraction`` of the train and
    test images shifted (``shift``, ``strength``); which ones is a function of the seed."""

    SIZES: ClassVar[tuple[str, ...]] = ImageData.SIZES

    shift: str = "dark"
    strength: float = 0.5
    fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_shift(self.shift, self.strength)
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"data.fraction must be in [0, 1], got {self.fraction}")

    def _build(self, seed: int) -> DataBundle:
        bundle = super()._build(seed)
        rng = np.random.default_rng([seed, 0x5EED])  # not the draws of the subset or synthetic data
        return DataBundle(
            train=self._shifted(bundle.train, rng), test=self._shifted(bundle.test, rng)
        )

    def _shifted(self, data: ImageDataset, rng: np.random.Generator) -> ImageDataset:
        images = data.images.numpy().copy()  # a copy: the loader's arrays may be cached
        n = len(images)
        idx = np.sort(rng.permutation(n)[: round(self.fraction * n)])
        images[idx] = shift_uint8(images[idx], self.shift, self.strength)
        return ImageDataset(
            images, data.labels.numpy(), data.transform, augment=data.augment, seed=data.seed
        )
