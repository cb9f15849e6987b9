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

**Under torchrun** (a ``torch.distributed`` process group is initialised) the training loader is
sharded by rank: ``data.batch_size`` is the *global* batch ``B``, each of the ``W`` ranks takes
``B/W`` of it (a world size that does not divide ``B`` is an error), and rank ``r`` reads the
epoch's permutation strided, ``order[r::W]``. Local batch ``j`` of every rank then holds
``order[j·B : (j+1)·B]`` between them: the global batch the one-process run sees at step ``j``,
so the averaged gradient is the one-process gradient, and a resume's offset stays a local count.

Augmentation is plain tensor ops on a (C, H, W) uint8 image: zero-pad by ``p`` and take a random
H x W crop (translations of up to ±p pixels), flip left-right with probability 1/2, then
normalise, ``x' = (x/255 - mean_c) / std_c`` per channel.

A ``data`` config names a *data module* (``_target_``, Lightning's DataModule): what every
dataset has (:class:`DataModule`: source, batch sizes, workers, subset sizes) plus what its kind
needs: :class:`ImageData` (any labelled image set of ``layer0_math.datasets``: shape, class
names, normalisation, augmentation) or :class:`CharText` (a text as characters). A new dataset of
a known kind is one YAML file; a new kind is a subclass here (or in a module of its own) plus one
YAML file. ``source: synthetic`` builds small random data of the same shapes (class-prototype
images, patterned text) so that tests can run every config in seconds; it is only ever used when
a config asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from layer0_math.datasets import LOADERS, CharVocab, load
from layer3_framework.repro import make_generator, seed_worker

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


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` unless a process group is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ResumableSampler(Sampler[int]):
    """Epoch ``e`` yields ``randperm(n, generator seeded seed + e)[rank::world][offset:]``.

    Unshuffled (``shuffle=False``) the order is ``0, ..., n - 1``. With ``world > 1`` the last
    ``n mod world`` positions of the order are dropped so that every rank has ``n // world``.
    """

    def __init__(
        self, n: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        if n < 1:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        if not 0 <= rank < world or n < world:
            raise ValueError(f"rank {rank} of world {world} cannot shard {n} samples")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch, self.offset = 0, 0

    def set_epoch(self, epoch: int, offset: int = 0) -> None:
        """Start epoch ``epoch`` at position ``offset`` of its order (a resume's data position)."""
        if not 0 <= offset <= self.n // self.world:
            raise ValueError(f"offset must be in [0, {self.n // self.world}], got {offset}")
        self.epoch, self.offset = epoch, offset

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=make_generator(self.seed + self.epoch))

    def __iter__(self) -> Iterator[int]:
        mine = self.order()[: self.n - self.n % self.world][self.rank :: self.world]
        return iter(mine[self.offset :].tolist())

    def __len__(self) -> int:
        return self.n // self.world - self.offset


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


@dataclass
class DataBundle:
    """The train and test datasets a data module built."""

    train: Dataset
    test: Dataset


@dataclass(kw_only=True)
class DataModule:
    """What every ``data`` config sets: where the samples come from and how they are batched.

    A dataset kind is a subclass (:class:`ImageData`, :class:`CharText`) named by the config's
    ``_target_``. :meth:`setup` builds the datasets; afterwards the module says what a model needs
    to know about them (:meth:`model_kwargs`: sizes such as ``num_classes`` or ``vocab_size``)
    and what a checkpoint must carry to use the model without the dataset
    (:meth:`preprocessing`: normalisation, class names, the vocabulary).
    """

    SIZES: ClassVar[tuple[str, ...]] = ()  # the keys of model_kwargs()

    name: str
    source: str = "real"  # real | synthetic (small random data of the same shapes, for tests)
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    n_train: int | None = None  # None: all; else a random subset of this many samples
    n_test: int | None = None
    drop_last: bool = True
    bundle: DataBundle | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in LOADERS:
            raise ValueError(f"unknown dataset {self.name!r}; expected one of {sorted(LOADERS)}")
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown data source {self.source!r}; expected one of {list(SOURCES)}"
            )
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("n_train", "n_test"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1 or null, got {getattr(self, key)}")

    def setup(self, seed: int = 0) -> DataBundle:
        """Build (once) and return the train and test datasets of a run seeded with ``seed``."""
        if self.bundle is None:
            self.bundle = self._build(seed)
        return self.bundle

    def _build(self, seed: int) -> DataBundle:
        raise NotImplementedError

    def _built(self) -> DataBundle:
        if self.bundle is None:
            raise RuntimeError(f"data module {self.name!r} is not set up: call setup(seed) first")
        return self.bundle

    def train_loader(self, seed: int = 0) -> DataLoader:
        """Shuffled (a function of seed and epoch), incomplete last batch dropped if asked; under
        torchrun this rank's ``batch_size / world`` share of each global batch."""
        rank, world = rank_and_world()
        if self.batch_size % world:
            raise ValueError(
                f"data.batch_size={self.batch_size} is not divisible by the world size {world}: "
                f"each of the {world} ranks takes batch_size / {world} of the global batch"
            )
        return build_loader(
            self._built().train,
            self.batch_size // world,
            shuffle=True,
            seed=seed,
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            rank=rank,
            world=world,
        )

    def eval_loader(self, seed: int = 0) -> DataLoader:
        return build_loader(
            self._built().test,
            self.eval_batch_size,
            shuffle=False,
            seed=seed,
            num_workers=self.num_workers,
        )

    def model_kwargs(self) -> dict[str, Any]:
        """The sizes a model's constructor may take from the data (``???`` in a model config)."""
        raise NotImplementedError

    def preprocessing(self) -> dict[str, Any]:
        """What turns raw input into the model's input and its output into answers (JSON)."""
        raise NotImplementedError


@dataclass(kw_only=True)
class ImageData(DataModule):
    """A labelled image dataset of ``layer0_math.datasets`` (``name`` is its registry name).

    ``shape`` is one image's (C, H, W) and ``classes`` the class names in label order: stated in
    the config, so that synthetic data and a model's sizes need no download.
    """

    SIZES: ClassVar[tuple[str, ...]] = ("in_channels", "image_size", "in_features", "num_classes")

    shape: list[int]
    classes: list[str]
    mean: list[float]
    std: list[float]
    augment: bool = False
    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.shape) != 3:
            raise ValueError(f"data.shape must be (C, H, W), got {list(self.shape)}")
        if len(self.classes) < 2:
            raise ValueError(f"data.classes must name at least 2 classes, got {self.classes}")
        self.transform = ImageTransform(self.mean, self.std, self.crop_padding, self.flip)

    def _arrays(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        if self.source == "real":
            return (*load(self.name, "train"), *load(self.name, "test"))  # type: ignore[misc]
        shape, k = tuple(self.shape), len(self.classes)
        return (
            *_synthetic_images(rng, self.n_train or 256, shape, k),
            *_synthetic_images(rng, self.n_test or 128, shape, k),
        )

    def _build(self, seed: int) -> DataBundle:
        rng = np.random.default_rng(seed)
        x_tr, y_tr, x_te, y_te = self._arrays(rng)
        x_tr, y_tr = _take(x_tr, y_tr, self.n_train, rng)
        x_te, y_te = _take(x_te, y_te, self.n_test, rng)
        return DataBundle(
            train=ImageDataset(x_tr, y_tr, self.transform, augment=self.augment, seed=seed),
            test=ImageDataset(x_te, y_te, self.transform, augment=False, seed=seed),
        )

    def model_kwargs(self) -> dict[str, Any]:
        c, h, w = self.shape
        return {
            "in_channels": c,
            "image_size": h,
            "in_features": c * h * w,
            "num_classes": len(self.classes),
        }

    def preprocessing(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "shape": list(self.shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": 255,  # x' = (x / scale - mean_c) / std_c on uint8 (C, H, W) images
            "classes": list(self.classes),
        }


@dataclass(kw_only=True)
class CharText(DataModule):
    """A text of ``layer0_math.datasets`` as characters: the first 90% trains, the rest tests.

    A sample is ``seq_len`` character ids and the same window shifted by one as targets;
    ``n_train``/``n_test`` count samples (windows of ``seq_len + 1`` characters), as for images.
    """

    SIZES: ClassVar[tuple[str, ...]] = ("vocab_size",)

    seq_len: int = 128
    vocab: CharVocab | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 1:
            raise ValueError(f"data.seq_len must be >= 1, got {self.seq_len}")

    def _build(self, seed: int) -> DataBundle:
        rng = np.random.default_rng(seed)
        n_tr = None if self.n_train is None else self.n_train * self.seq_len + 1
        n_te = None if self.n_test is None else self.n_test * self.seq_len + 1
        if self.source == "real":
            text = str(load(self.name))
        else:
            text = _synthetic_text(rng, (n_tr or 8192) + (n_te or 2048))
        self.vocab = CharVocab.from_text(text)
        ids = np.asarray(self.vocab.encode(text), dtype=np.int64)
        cut = int(0.9 * len(ids)) if self.source == "real" or n_tr is None else n_tr
        train_ids = ids[:cut] if n_tr is None else ids[: min(cut, n_tr)]
        test_ids = ids[cut:] if n_te is None else ids[cut : cut + n_te]
        return DataBundle(
            train=CharDataset(train_ids, self.seq_len), test=CharDataset(test_ids, self.seq_len)
        )

    def _vocab(self) -> CharVocab:
        self._built()
        assert self.vocab is not None  # set with the bundle
        return self.vocab

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": len(self._vocab())}

    def preprocessing(self) -> dict[str, Any]:
        return {"kind": "text", "seq_len": self.seq_len, "chars": list(self._vocab().chars)}


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A DataLoader over ``dataset`` with a :class:`ResumableSampler` (rank ``rank``'s shard of
    ``world``) and seeded workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(len(dataset), seed=seed, shuffle=shuffle, rank=rank, world=world),
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=make_generator(seed),
        drop_last=drop_last,
        persistent_workers=False,
    )
