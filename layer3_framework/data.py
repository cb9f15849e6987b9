"""The one data pipeline: numpy datasets from layer 0 become batches of torch tensors.

Three ideas make a pipeline *reproducible* and *resumable*, not just fast:

1. **Shuffling is a function of (seed, epoch).** :class:`ResumableSampler` draws epoch ``e``'s
   permutation from a ``torch.Generator`` seeded with ``seed + e`` and can start part-way
   (``offset``), so a run resumed after ``k`` batches of epoch ``e`` sees exactly the batches the
   uninterrupted run saw next. Its state is two integers, ``(epoch, offset)``.
2. **Augmentation randomness is a function of (seed, epoch, index).** Instead of drawing crops and
   flips from a stateful generator (whose state depends on which worker got which sample and on
   how far a previous run got), each sample's random numbers are a hash of
   ``(seed, epoch, index)``: SplitMix64, a counter-based generator,
   ``z = (x + 0x9E3779B97F4A7C15·k)``, then three xor-shift-multiply rounds. The same sample in the
   same epoch is always augmented the same way, whatever the number of workers or restarts.
3. **Workers are seeded** (``worker_init_fn=seed_worker``, ``generator=make_generator(seed)``) so
   any other randomness a transform might use is a function of the seed as well.

Augmentation is plain tensor ops on a (C, H, W) uint8 image: zero-pad by ``p`` and take a random
H x W crop (translations of up to ±p pixels), flip left-right with probability 1/2, then
normalise, ``x' = (x/255 - mean_c) / std_c`` per channel.

Datasets: ``mnist`` and ``cifar10`` (images, class labels) and ``shakespeare`` (characters; a
sample is ``seq_len`` ids and the same window shifted by one as targets). ``source: synthetic``
builds small random data of the same shapes (class-prototype images, patterned text) so that
tests can run every config in seconds; it is only ever used when a config asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from layer0_math.datasets import CharVocab, load_cifar10, load_mnist, load_tiny_shakespeare
from layer3_framework.repro import make_generator, seed_worker

DATASETS = ("mnist", "cifar10", "shakespeare")
SOURCES = ("real", "synthetic")
_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One SplitMix64 output for the 64-bit counter ``x`` (a well-mixed 64-bit integer)."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_key(seed: int, epoch: int, index: int) -> int:
    """The 64-bit random word of sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index)


@dataclass
class ImageTransform:
    """Per-sample augmentation and normalisation of a uint8 (C, H, W) image."""

    mean: Sequence[float]
    std: Sequence[float]
    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {list(self.mean)} and std {list(self.std)} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        # x' = x/(255 std) - mean/std, per channel, broadcast over (C, H, W)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(-1, 1, 1)
        self._shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)])
        self._shift = self._shift.view(-1, 1, 1)

    def __call__(self, image: torch.Tensor, key: int | None) -> torch.Tensor:
        """``image`` uint8 (C, H, W) -> float32 (C, H, W); ``key`` None means no augmentation."""
        c, h, w = image.shape
        if c != len(self.mean):
            raise ValueError(f"image has {c} channels but mean/std have {len(self.mean)}")
        if key is not None and self.crop_padding:
            p = self.crop_padding
            dy, dx = key % (2 * p + 1), (key >> 8) % (2 * p + 1)
            padded = F.pad(image, (p, p, p, p))  # (C, H+2p, W+2p), zeros
            image = padded[:, dy : dy + h, dx : dx + w]
        if key is not None and self.flip and (key >> 16) & 1:
            image = image.flip(-1)
        return image.to(torch.float32) * self._scale - self._shift


class ImageDataset(Dataset):
    """Images uint8 (N, C, H, W) and labels int (N,) as normalised, optionally augmented tensors."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: ImageTransform,
        *,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        if images.ndim == 3:  # (N, H, W) grey images get a channel axis
            images = images[:, None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, C, H, W) or (N, H, W), got {images.dtype} {images.shape}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {labels.shape} != ({images.shape[0]},)")
        if not images.flags.writeable:  # a memory-mapped cache: torch wants its own copy
            images = images.copy()
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations of epoch ``epoch`` (called by the trainer before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = sample_key(self.seed, self.epoch, index) if self.augment else None
        return self.transform(self.images[index], key), self.labels[index]


class CharDataset(Dataset):
    """Non-overlapping windows of a token-id stream: x = ids[i·T : i·T+T], y = x shifted by one."""

    def __init__(self, ids: np.ndarray, seq_len: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if ids.ndim != 1 or len(ids) < seq_len + 1:
            raise ValueError(f"need a 1-D id stream longer than seq_len={seq_len}, got {ids.shape}")
        self.ids = torch.from_numpy(ids.astype(np.int64))
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.seq_len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = index * self.seq_len
        chunk = self.ids[start : start + self.seq_len + 1]
        return chunk[:-1], chunk[1:]


class ResumableSampler(Sampler[int]):
    """Epoch ``e`` yields ``randperm(n, generator seeded seed + e)[offset:]``.

    Unshuffled (``shuffle=False``) it yields ``offset, ..., n - 1``.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True) -> None:
        if n < 1:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.offset = 0, 0

    def set_epoch(self, epoch: int, offset: int = 0) -> None:
        """Start epoch ``epoch`` at position ``offset`` of its order (a resume's data position)."""
        if not 0 <= offset <= self.n:
            raise ValueError(f"offset must be in [0, {self.n}], got {offset}")
        self.epoch, self.offset = epoch, offset

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=make_generator(self.seed + self.epoch))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.offset :].tolist())

    def __len__(self) -> int:
        return self.n - self.offset


@dataclass
class DataConfig:
    """One dataset and how to batch it (the ``data`` config group)."""

    name: str = "cifar10"
    source: str = "real"
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    augment: bool = False
    crop_padding: int = 0
    flip: bool = False
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    seq_len: int = 64
    n_train: int | None = None
    n_test: int | None = None
    drop_last: bool = True

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; expected one of {list(DATASETS)}")
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown data source {self.source!r}; expected one of {list(SOURCES)}"
            )
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class DataBundle:
    """The train and test datasets and what a model needs to know about them."""

    train: Dataset
    test: Dataset
    kind: str  # "image" or "text"
    num_classes: int
    in_shape: tuple[int, ...] = ()
    vocab: Any = None


def _synthetic_images(
    rng: np.random.Generator, n: int, shape: tuple[int, ...], classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable random images: a fixed random prototype per class plus noise."""
    protos = np.random.default_rng(1234).uniform(0, 255, size=(classes, *shape))
    y = rng.integers(0, classes, size=n)
    x = protos[y] + rng.normal(0, 40, size=(n, *shape))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def _synthetic_text(rng: np.random.Generator, n_chars: int) -> str:
    words = ["to be", "or not", "the king", "my lord", "and so", "what is"]
    out, size = [], 0
    while size < n_chars:
        w = words[int(rng.integers(len(words)))] + (" " if rng.random() < 0.8 else "\n")
        out.append(w)
        size += len(w)
    return "".join(out)[:n_chars]


def _take(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator) -> tuple:
    """The first ``n`` of a random permutation (all when ``n`` is None): class-balanced on average,
    which matters for CIFAR-10's test split, stored sorted by class."""
    if n is None or n >= len(x):
        return x, y
    idx = np.sort(rng.permutation(len(x))[:n])
    return x[idx], y[idx]


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """The datasets ``cfg`` describes (real data via ``layer0_math.datasets``, or synthetic)."""
    rng = np.random.default_rng(seed)
    if cfg.name == "shakespeare":
        # n_train / n_test count samples (windows of seq_len + 1 characters), as for images
        n_tr = None if cfg.n_train is None else cfg.n_train * cfg.seq_len + 1
        n_te = None if cfg.n_test is None else cfg.n_test * cfg.seq_len + 1
        if cfg.source == "real":
            text = load_tiny_shakespeare()
        else:
            text = _synthetic_text(rng, (n_tr or 8192) + (n_te or 2048))
        vocab = CharVocab.from_text(text)
        ids = np.asarray(vocab.encode(text), dtype=np.int64)
        cut = int(0.9 * len(ids)) if cfg.source == "real" or n_tr is None else n_tr
        train_ids = ids[:cut] if n_tr is None else ids[: min(cut, n_tr)]
        test_ids = ids[cut:] if n_te is None else ids[cut : cut + n_te]
        return DataBundle(
            train=CharDataset(train_ids, cfg.seq_len),
            test=CharDataset(test_ids, cfg.seq_len),
            kind="text",
            num_classes=len(vocab),
            in_shape=(cfg.seq_len,),
            vocab=vocab,
        )
    shape = (1, 28, 28) if cfg.name == "mnist" else (3, 32, 32)
    if cfg.source == "real":
        loader = load_mnist if cfg.name == "mnist" else load_cifar10
        x_tr, y_tr = loader("train")
        x_te, y_te = loader("test")
    else:
        x_tr, y_tr = _synthetic_images(rng, cfg.n_train or 256, shape, 10)
        x_te, y_te = _synthetic_images(rng, cfg.n_test or 128, shape, 10)
    x_tr, y_tr = _take(x_tr, y_tr, cfg.n_train, rng)
    x_te, y_te = _take(x_te, y_te, cfg.n_test, rng)
    transform = ImageTransform(cfg.mean, cfg.std, cfg.crop_padding, cfg.flip)
    return DataBundle(
        train=ImageDataset(x_tr, y_tr, transform, augment=cfg.augment, seed=seed),
        test=ImageDataset(x_te, y_te, transform, augment=False, seed=seed),
        kind="image",
        num_classes=10,
        in_shape=shape,
    )


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`ResumableSampler` and seeded workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(len(dataset), seed=seed, shuffle=shuffle),
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
        drop_last=drop_last,
        persistent_workers=False,
    )
