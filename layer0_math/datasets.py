"""Datasets as numpy arrays: one loader for the whole stack.

Every dataset has a registry entry (:data:`REGISTRY`): the files it needs, a checksum for each,
and where a user downloads them. A file is looked for, in order, in

1. every folder of ``$DLSTACK_DATA`` (colon-separated),
2. the download cache ``$XDG_CACHE_HOME/dlstack`` (default ``~/.cache/dlstack``),
3. a download into that cache (progress bar, checksum checked), unless ``DLSTACK_OFFLINE=1``.

Missing data is an error that lists every place looked and how to fix it; a file with the wrong
size or checksum is an error that names the file. Nothing is ever replaced by synthetic data.

Checksums are taken over the *decompressed* content, so a re-gzipped file with the same bytes
inside is accepted (the shared copy of MNIST's train images is one). Decoded arrays are cached as
``.npy`` next to the downloads and memory-mapped, so a second load skips the decompression.

Shapes and dtypes::

    load_mnist(split)        -> x uint8 (N, 28, 28), y int64 (N,)       N = 60000 | 10000
    load_fashion_mnist(split)-> x uint8 (N, 28, 28), y int64 (N,)
    load_cifar10(split)      -> x uint8 (N, 3, 32, 32) (N, C, H, W), y int64 (N,)  N = 50000 | 10000
    load_digits()            -> x uint8 (1797, 8, 8) in 0..16, y int64 (1797,)  (scikit-learn's)
    load_diabetes(scaled)    -> x float64 (442, 10), y float64 (442,)           (scikit-learn's)
    load_tiny_shakespeare()  -> str (1,115,394 characters)
    load_tinystories()       -> str (a ~800 kB sample of the validation split)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DatasetError(RuntimeError):
    """A dataset is unknown, missing, or a file of it is corrupt."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset.

    ``path`` is relative to a data folder. ``sha256`` and ``size`` are of the decompressed
    content (the file itself when it is not gzipped); ``None`` means not checked (the file came
    from an archive whose own checksum was verified at download time).
    """

    path: str
    sha256: str | None
    size: int | None
    url: str | None = None
    alternatives: tuple[FileSpec, ...] = ()


@dataclass(frozen=True)
class Archive:
    """A download that unpacks into several registry files (CIFAR-10's tarball)."""

    url: str
    md5: str
    members: dict[str, str]  # member name in the archive -> path relative to a data folder


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    files: dict[str, FileSpec]
    source: str
    archive: Archive | None = None
    notes: str = ""
    splits: tuple[str, ...] = field(default=())


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"


def _idx(folder: str, name: str, sha: str | None, size: int, url: str) -> FileSpec:
    return FileSpec(f"{folder}/{name}.gz", sha, size, url + name + ".gz")


def _cifar_file(name: str, sha: str) -> FileSpec:
    # The shared copy is gzipped and JPEG-derived (its README); the canonical download unpacks to
    # plain .bin files, accepted by size (the archive's md5 was checked when it was downloaded).
    canonical = FileSpec(f"cifar-10/cifar-10-batches-bin/{name}", None, 30_730_000)
    return FileSpec(
        f"cifar-10/cifar-10-batches-bin/{name}.gz", sha, 30_730_000, alternatives=(canonical,)
    )


REGISTRY: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(
        "mnist",
        {
            "train_images": _idx(
                "mnist",
                "train-images-idx3-ubyte",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                47_040_016,
                _MNIST_URL,
            ),
            "train_labels": _idx(
                "mnist",
                "train-labels-idx1-ubyte",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                60_008,
                _MNIST_URL,
            ),
            "test_images": _idx(
                "mnist",
                "t10k-images-idx3-ubyte",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                7_840_016,
                _MNIST_URL,
            ),
            "test_labels": _idx(
                "mnist",
                "t10k-labels-idx1-ubyte",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                10_008,
                _MNIST_URL,
            ),
        },
        source="yann.lecun.com/exdb/mnist (mirror: ossci-datasets.s3.amazonaws.com/mnist)",
        splits=("train", "test"),
    ),
    "fashion_mnist": DatasetEntry(
        "fashion_mnist",
        {
            # Zalando publishes md5s of the .gz files only; the content is checked by size.
            "train_images": _idx(
                "fashion-mnist", "train-images-idx3-ubyte", None, 47_040_016, _FASHION_URL
            ),
            "train_labels": _idx(
                "fashion-mnist", "train-labels-idx1-ubyte", None, 60_008, _FASHION_URL
            ),
            "test_images": _idx(
                "fashion-mnist", "t10k-images-idx3-ubyte", None, 7_840_016, _FASHION_URL
            ),
            "test_labels": _idx(
                "fashion-mnist", "t10k-labels-idx1-ubyte", None, 10_008, _FASHION_URL
            ),
        },
        source="github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz)",
        splits=("train", "test"),
    ),
    "cifar10": DatasetEntry(
        "cifar10",
        {
            "data_batch_1": _cifar_file(
                "data_batch_1.bin",
                "95bc40a96c189b4ae973b8e377256610c0b0865f59a76bf2e7b5f5d3b6a9cd51",
            ),
            "data_batch_2": _cifar_file(
                "data_batch_2.bin",
                "5bb5b7448ab13050c953f52e49624887d937f2dbc737ba8308b771b88b6f5ced",
            ),
            "data_batch_3": _cifar_file(
                "data_batch_3.bin",
                "ecc5c793ff8d4a06b657d4f9dfc1eb1e29f15f7e75fed9b9c34eb4df9459108d",
            ),
            "data_batch_4": _cifar_file(
                "data_batch_4.bin",
                "9e28b99d5925a27d404ec940d84ec491ea1cd48e3ceb0e9db193afd19c93e65b",
            ),
            "data_batch_5": _cifar_file(
                "data_batch_5.bin",
                "887c29d30b4a78aa9e3c200efd2298570173503aa557ab013e8e62afb37a242a",
            ),
            "test_batch": _cifar_file(
                "test_batch.bin", "cf28711b3059b27ed8a78d6529b5ba5b5c94130096ca62a1a924268a9a9ec05b"
            ),
        },
        source=_CIFAR_URL,
        archive=Archive(
            _CIFAR_URL,
            "c32a1d4ab5d03f1284b67883e8d87530",
            {
                f"cifar-10-batches-bin/{n}.bin": f"cifar-10/cifar-10-batches-bin/{n}.bin"
                for n in (
                    "data_batch_1",
                    "data_batch_2",
                    "data_batch_3",
                    "data_batch_4",
                    "data_batch_5",
                    "test_batch",
                )
            },
        ),
        notes="The shared copy's pixels are JPEG-decoded and its test set is sorted by class.",
        splits=("train", "test"),
    ),
    "tiny_shakespeare": DatasetEntry(
        "tiny_shakespeare",
        {
            "text": FileSpec(
                "tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                1_115_394,
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            )
        },
        source="github.com/karpathy/char-rnn",
    ),
    "tinystories": DatasetEntry(
        "tinystories",
        {
            "text": FileSpec(
                "tinystories/valid-sample.txt.gz",
                "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6",
                794_375,
            )
        },
        source="huggingface.co/datasets/roneneldan/TinyStories (this sample has no public URL; "
        "get it from the dlstack shared data folder)",
    ),
    "digits": DatasetEntry("digits", {}, source="bundled with scikit-learn (no download)"),
    "diabetes": DatasetEntry("diabetes", {}, source="bundled with scikit-learn (no download)"),
}


# ----------------------------------------------------------------------------- locating files


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dlstack`` (default ``~/.cache/dlstack``): downloads and decoded arrays."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlstack"


def data_dirs() -> list[Path]:
    """Folders searched before the cache, from ``$DLSTACK_DATA`` (colon-separated)."""
    return [Path(p).expanduser() for p in os.environ.get("DLSTACK_DATA", "").split(":") if p]


def _entry(name: str) -> DatasetEntry:
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def _read_content(path: Path) -> bytes:
    """The file's bytes, decompressed when it ends in .gz; a broken archive names the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        raise DatasetError(
            f"{path} is truncated or not a valid gzip file ({e}); delete it and fetch it again"
        ) from e


def _verify(spec: FileSpec, path: Path) -> bytes:
    content = _read_content(path)
    if spec.size is not None and len(content) != spec.size:
        raise DatasetError(
            f"{path} holds {len(content):,} bytes of content, expected "
            f"{spec.size:,}: the file is truncated or not the right file"
        )
    if spec.sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != spec.sha256:
            raise DatasetError(
                f"{path} has sha256 {digest}, expected {spec.sha256}: the file is "
                "corrupt or a different version; delete it and fetch it again"
            )
    return content


def _find(spec: FileSpec) -> tuple[FileSpec, Path] | None:
    for folder in [*data_dirs(), cache_dir()]:
        for candidate in (spec, *spec.alternatives):
            if (folder / candidate.path).is_file():
                return candidate, folder / candidate.path
    return None


def _download(url: str, dest: Path) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, os.fdopen(fd, "wb") as out:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := r.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(entry: DatasetEntry, spec: FileSpec) -> tuple[FileSpec, Path]:
    """Download a file (or the archive holding it) into the cache; return what to read."""
    if entry.archive is not None:
        archive = cache_dir() / "archives" / Path(entry.archive.url).name
        if not archive.exists():
            _download(entry.archive.url, archive)
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        if md5 != entry.archive.md5:
            archive.unlink()
            raise DatasetError(f"{archive} has md5 {md5}, expected {entry.archive.md5}")
        with tarfile.open(archive) as tar:
            for member, rel in entry.archive.members.items():
                target = cache_dir() / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    raise DatasetError(f"{archive} has no member {member}")
                target.write_bytes(src.read())
        found = _find(spec)
        if found is None:
            raise DatasetError(f"{archive} did not provide {spec.path}")
        return found
    if spec.url is None:
        raise DatasetError(f"{spec.path} has no download URL")
    dest = cache_dir() / spec.path
    _download(spec.url, dest)
    return spec, dest


def locate(name: str, key: str) -> tuple[FileSpec, Path]:
    """Find (or download) one registry file of a dataset; the error says everything tried."""
    entry = _entry(name)
    if key not in entry.files:
        raise DatasetError(f"dataset {name!r} has no file {key!r}; it has {sorted(entry.files)}")
    spec = entry.files[key]
    found = _find(spec)
    if found is not None:
        return found
    looked = [str(folder / spec.path) for folder in [*data_dirs(), cache_dir()]]
    if os.environ.get("DLSTACK_OFFLINE") == "1":
        why = "DLSTACK_OFFLINE=1, so no download was tried"
    else:
        try:
            return _fetch(entry, spec)
        except (urllib.error.URLError, OSError, DatasetError, tarfile.TarError) as e:
            why = f"the download failed: {e}"
    raise DatasetError(
        f"dataset {name!r} is missing its file {spec.path}.\n"
        "  looked in:\n    " + "\n    ".join(looked) + f"\n  {why}.\n"
        f"  source: {entry.source}\n"
        "  fix: point DLSTACK_DATA at a folder holding a copy "
        f"(export DLSTACK_DATA=/path/to/data, with {spec.path} inside it), or allow the download."
    )


def read_file(name: str, key: str) -> bytes:
    """The verified, decompressed content of one registry file."""
    spec, path = locate(name, key)
    return _verify(spec, path)


# ----------------------------------------------------------------------------- decoded-array cache


def _cached(tag: str, decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Decode once, then memory-map ``.npy`` files from the cache (``tag`` keys the content)."""
    folder = cache_dir() / "decoded" / tag
    marker = folder / "complete"
    if marker.exists():
        return {p.stem: np.load(p, mmap_mode="r") for p in sorted(folder.glob("*.npy"))}
    arrays = decode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for k, v in arrays.items():
            tmp = folder / f".{k}.{os.getpid()}.npy"
            np.save(tmp, v)
            os.replace(tmp, folder / f"{k}.npy")
        marker.touch()
    except OSError:
        pass  # a read-only cache only costs the decode next time
    return arrays


def _cache_tag(name: str, keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        spec, path = locate(name, key)
        st = path.stat()
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{spec.sha256}")
    return f"{name}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _check_split(name: str, split: str) -> None:
    splits = _entry(name).splits
    if split not in splits:
        raise DatasetError(f"unknown split {split!r} for {name}; expected one of {list(splits)}")


# ----------------------------------------------------------------------------- formats


def parse_idx_images(content: bytes, source: str = "IDX file") -> np.ndarray:
    """IDX3: magic 2051, count, rows, cols (big-endian uint32), then uint8 pixels."""
    if len(content) < 16:
        raise DatasetError(f"{source} is too short for an IDX header ({len(content)} bytes)")
    magic, n, rows, cols = (int(v) for v in np.frombuffer(content, ">u4", 4))
    if magic != 2051:
        raise DatasetError(f"{source} has magic {magic}, expected 2051 (IDX images)")
    if len(content) != 16 + n * rows * cols:
        raise DatasetError(
            f"{source} holds {len(content) - 16} pixel bytes, header says {n}x{rows}x{cols}"
        )
    return np.frombuffer(content, np.uint8, offset=16).reshape(n, rows, cols)


def parse_idx_labels(content: bytes, source: str = "IDX file") -> np.ndarray:
    """IDX1: magic 2049, count (big-endian uint32), then uint8 labels."""
    if len(content) < 8:
        raise DatasetError(f"{source} is too short for an IDX header ({len(content)} bytes)")
    magic, n = (int(v) for v in np.frombuffer(content, ">u4", 2))
    if magic != 2049:
        raise DatasetError(f"{source} has magic {magic}, expected 2049 (IDX labels)")
    if len(content) != 8 + n:
        raise DatasetError(f"{source} holds {len(content) - 8} labels, header says {n}")
    return np.frombuffer(content, np.uint8, offset=8).astype(np.int64)


def parse_cifar_bin(content: bytes, source: str = "CIFAR-10 file") -> tuple[np.ndarray, np.ndarray]:
    """Records of 3073 bytes: label, then 1024 R, 1024 G, 1024 B values (32x32, row-major)."""
    if len(content) % 3073:
        raise DatasetError(f"{source} is {len(content)} bytes, not a multiple of 3073-byte records")
    records = np.frombuffer(content, np.uint8).reshape(-1, 3073)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _load_idx_pair(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    _check_split(name, split)
    keys = (f"{split}_images", f"{split}_labels")

    def decode() -> dict[str, np.ndarray]:
        x = parse_idx_images(read_file(name, keys[0]), f"{name} {keys[0]}")
        y = parse_idx_labels(read_file(name, keys[1]), f"{name} {keys[1]}")
        return {"x": x, "y": y}

    arrays = _cached(_cache_tag(name, keys), decode)
    return arrays["x"], arrays["y"]


# ----------------------------------------------------------------------------- public loaders


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits: x uint8 (N, 28, 28) with 0 = background, y int64 (N,) in 0..9."""
    return _load_idx_pair("mnist", split)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST: the MNIST format with 10 clothing classes."""
    return _load_idx_pair("fashion_mnist", split)


CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def load_cifar10(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10: x uint8 (N, 3, 32, 32) in (N, C, H, W) RGB order, y int64 (N,) in 0..9.

    The shared copy's test set is sorted by class: shuffle before taking a subset.
    """
    _check_split("cifar10", split)
    keys = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]

    def decode() -> dict[str, np.ndarray]:
        parts = [parse_cifar_bin(read_file("cifar10", k), f"cifar10 {k}") for k in keys]
        return {
            "x": np.concatenate([p[0] for p in parts]),
            "y": np.concatenate([p[1] for p in parts]),
        }

    arrays = _cached(_cache_tag("cifar10", keys), decode)
    return arrays["x"], arrays["y"]


def load_tiny_shakespeare() -> str:
    """Tiny Shakespeare (char-rnn's input.txt): 1,115,394 ASCII characters, 65 distinct."""
    return read_file("tiny_shakespeare", "text").decode("utf-8")


def load_tinystories() -> str:
    """A ~800 kB sample of TinyStories' validation split as one stream of text (see its README)."""
    return read_file("tinystories", "text").decode("utf-8")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: x uint8 (1797, 8, 8) with values 0..16, y int64."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return d.images.astype(np.uint8), d.target.astype(np.int64)


DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def load_diabetes(scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled diabetes regression data: x float64 (442, 10), y float64 (442,).

    ``scaled=True`` gives sklearn's mean-centred, unit-norm columns; ``False`` the raw units
    (years, mg/dL, ...). Column names are :data:`DIABETES_FEATURES`.
    """
    from sklearn.datasets import load_diabetes as sk_diabetes

    x, y = sk_diabetes(return_X_y=True, scaled=scaled)
    return x.astype(np.float64), y.astype(np.float64)


LOADERS: dict[str, Callable[..., object]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "tiny_shakespeare": load_tiny_shakespeare,
    "tinystories": load_tinystories,
    "digits": load_digits,
    "diabetes": load_diabetes,
}


def load(name: str, *args: str) -> object:
    """Load a dataset by registry name (``load("mnist", "test")``)."""
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[name](*args)


# ----------------------------------------------------------------------------- text


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: ``encode`` text to int64 ids, ``decode`` ids back to text."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        index = self.index
        try:
            return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} is not in the vocabulary of {len(self)} characters"
            ) from None

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(
                f"ids must lie in [0, {len(self)}), got range [{ids.min()}, {ids.max()}]"
            )
        return "".join(self.chars[i] for i in ids.tolist())


@dataclass(frozen=True)
class ByteVocab:
    """UTF-8 bytes as tokens (vocabulary of 256): works for any text, no fitting needed."""

    def __len__(self) -> int:
        return 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")
