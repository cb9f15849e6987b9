"""Datasets as numpy arrays: one loader for the whole stack.

Every dataset has a registry entry (:data:`REGISTRY`): the files it needs, a checksum for each,
and where a user downloads them. A file is looked for, in order, in

1. every folder of ``$DLSTACK_DATA`` (colon-separated),
2. the download cache ``$XDG_CACHE_HOME/dlstack`` (default ``~/.cache/dlstack``),
3. a download into that cache (progress bar, checksum checked), unless ``DLSTACK_OFFLINE=1``.

Missing data is an error that lists every place looked and how to fix it; a file with the wrong
size or checksum is an error that names the file. Nothing is ever replaced by synthetic data.

Checksums are taken over the *decompressed* content, so a re-gzipped file with the same bytes
inside is accepted (the shared copy of MNIST's train images is one). Labels outside
``0..num_classes-1`` are an error naming the file and the value.

Decoded arrays are cached as ``.npy`` under ``<cache>/decoded/<tag>/`` and memory-mapped, so a
second load skips the decompression. The cache is only ever trusted with proof:

- every file is written under a temporary name no lookup matches (``.<name>.<random>.tmp``), then
  renamed into place atomically, and the record ``cache.json`` is written last; a process killed
  mid-write leaves only a temporary file, which is ignored and removed once an hour old;
- ``cache.json`` records the source files the arrays were decoded from (path, size, mtime,
  registry sha256) and each array's shape, dtype and the sha256 of its ``.npy`` bytes; a load
  re-checks all of it (hashing runs at ~1 GB/s: ~0.1 s for CIFAR-10's 150 MB train set), and a
  cache that fails any check is rebuilt from the sources with a :class:`DatasetCacheWarning`,
  never returned.

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

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from layer0_math.files import atomic_file


class DatasetError(RuntimeError):
    """A dataset is unknown, missing, or a file of it is corrupt."""


class DatasetCacheWarning(UserWarning):
    """A decoded-array cache did not match what it was made from and is being rebuilt."""


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
    num_classes: int | None = None  # labels must lie in 0..num_classes-1


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
        num_classes=10,
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
        num_classes=10,
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
        num_classes=10,
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


# ----------------------------------------------------------------------------- writing files

_STALE_SECONDS = 3600.0  # no write takes an hour: an older temporary file's writer is dead


def remove_stale_temps(folder: Path, older_than: float = _STALE_SECONDS) -> None:
    """Delete the hidden temporary files a killed writer left in one of our cache folders.

    Only files older than ``older_than`` seconds go: a younger one may be another process's
    write in progress.
    """
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than
    for p in folder.glob(".*"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()


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
    """The file's bytes, decompressed when it ends in .gz; each way of failing names the file."""
    try:
        with open(path, "rb") as raw:
            if path.suffix != ".gz":
                return raw.read()
            with gzip.GzipFile(fileobj=raw) as f:
                return f.read()
    except PermissionError as e:
        raise DatasetError(
            f"permission denied reading {path}: make it readable (chmod a+r) or point "
            "DLSTACK_DATA at a readable copy"
        ) from e
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(
            f"{path} is truncated or not a valid gzip file ({e}); delete it and fetch it again"
        ) from e
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from e


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

    remove_stale_temps(dest.parent)
    with urllib.request.urlopen(url, timeout=60) as r, atomic_file(dest) as out:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
            while chunk := r.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _fetch_archive(archive_spec: Archive, spec: FileSpec) -> tuple[FileSpec, Path]:
    """Download the archive once, check its md5, unpack every member into the cache."""
    archive = cache_dir() / "archives" / Path(archive_spec.url).name
    if not archive.exists():
        _download(archive_spec.url, archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5 != archive_spec.md5:
        archive.unlink()
        raise DatasetError(f"{archive} has md5 {md5}, expected {archive_spec.md5}")
    with tarfile.open(archive) as tar:
        for member, rel in archive_spec.members.items():
            src = tar.extractfile(member)
            if src is None:
                raise DatasetError(f"{archive} has no member {member}")
            with atomic_file(cache_dir() / rel) as out:
                shutil.copyfileobj(src, out)
    found = _find(spec)
    if found is None:
        raise DatasetError(f"{archive} did not provide {spec.path}")
    return found


def _fetch(entry: DatasetEntry, spec: FileSpec) -> tuple[FileSpec, Path]:
    """Download a file (or the archive holding it) into the cache; return what to read."""
    if entry.archive is not None:
        return _fetch_archive(entry.archive, spec)
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


def _read_with_source(name: str, key: str) -> tuple[bytes, str]:
    """A registry file's verified content, and how errors about it name it."""
    spec, path = locate(name, key)
    return _verify(spec, path), f"{path} ({name} {key})"


def read_file(name: str, key: str) -> bytes:
    """The verified, decompressed content of one registry file."""
    return _read_with_source(name, key)[0]


# ----------------------------------------------------------------------------- decoded-array cache

CACHE_RECORD = "cache.json"
_CACHE_FORMAT = 1
_ARRAYS = ("x", "y")  # every cached dataset is images x and labels y


class _BadCache(Exception):
    """Why a decoded cache cannot be trusted (turned into a warning and a rebuild)."""


def _sources(name: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    """What a decoded cache is made from: each source file's path, size, mtime and checksum."""
    out = []
    for key in keys:
        spec, path = locate(name, key)
        st = path.stat()
        out.append(
            {
                "path": str(path.resolve()),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": spec.sha256,
            }
        )
    return out


def _cache_tag(name: str, sources: list[dict[str, Any]]) -> str:
    parts = [f"{s['path']}:{s['size']}:{s['mtime_ns']}:{s['sha256']}" for s in sources]
    return f"{name}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class _HashingWriter:
    """Hands bytes on to a file and hashes them on the way: the checksum of exactly what was
    written, with no second read."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.f.write(data)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _verified_array(folder: Path, key: str, info: Any) -> np.ndarray:
    """The memory-mapped ``<key>.npy`` if its bytes, shape and dtype are the recorded ones."""
    path = folder / f"{key}.npy"
    if not isinstance(info, dict) or not path.is_file():
        raise _BadCache(f"{path.name} is missing or unrecorded")
    digest = _file_sha256(path)
    if digest != info.get("sha256"):
        raise _BadCache(f"{path.name} has sha256 {digest}, recorded {info.get('sha256')}")
    array = np.load(path, mmap_mode="r")
    if list(array.shape) != info.get("shape") or array.dtype.str != info.get("dtype"):
        raise _BadCache(
            f"{path.name} holds {array.dtype.str} {list(array.shape)}, recorded "
            f"{info.get('dtype')} {info.get('shape')}"
        )
    return array


def _read_cache(folder: Path, sources: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every cached array, each checked against the record; :class:`_BadCache` says why not."""
    try:
        record = json.loads((folder / CACHE_RECORD).read_text())
    except ValueError as e:  # JSONDecodeError and undecodable bytes both
        raise _BadCache(f"its record {CACHE_RECORD} is unreadable ({e})") from e
    if not isinstance(record, dict) or record.get("format") != _CACHE_FORMAT:
        raise _BadCache(f"its record {CACHE_RECORD} is not a format-{_CACHE_FORMAT} record")
    if record.get("sources") != sources:
        made_from = [s.get("path") for s in record.get("sources") or [] if isinstance(s, dict)]
        raise _BadCache(f"it was made from other files ({made_from}) or older versions of them")
    arrays = record.get("arrays")
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAYS):
        raise _BadCache(f"its record lists arrays {arrays!r}, expected {list(_ARRAYS)}")
    return {key: _verified_array(folder, key, arrays[key]) for key in _ARRAYS}


def _write_cache(
    folder: Path, sources: list[dict[str, Any]], arrays: dict[str, np.ndarray]
) -> None:
    """Each array to ``<key>.npy``, then the record that vouches for them, each atomically."""
    record: dict[str, Any] = {"format": _CACHE_FORMAT, "sources": sources, "arrays": {}}
    for key in _ARRAYS:
        with atomic_file(folder / f"{key}.npy") as f:
            writer = _HashingWriter(f)
            np.save(writer, arrays[key])  # type: ignore[arg-type]
        record["arrays"][key] = {
            "shape": list(arrays[key].shape),
            "dtype": arrays[key].dtype.str,
            "sha256": writer.sha256.hexdigest(),
        }
    with atomic_file(folder / CACHE_RECORD) as f:
        f.write(json.dumps(record, indent=1).encode())
    keep = {CACHE_RECORD, *(f"{key}.npy" for key in _ARRAYS)}
    for p in folder.iterdir():  # e.g. an older version's marker file; hidden temps age out
        if p.name not in keep and not p.name.startswith("."):
            p.unlink(missing_ok=True)


def _cached(
    name: str, keys: Sequence[str], decode: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Decode once, then memory-map the verified ``.npy`` files (see the module docstring)."""
    sources = _sources(name, keys)
    folder = cache_dir() / "decoded" / _cache_tag(name, sources)
    remove_stale_temps(folder)
    if (folder / CACHE_RECORD).is_file():
        try:
            return _read_cache(folder, sources)
        except (_BadCache, OSError, ValueError) as e:
            warnings.warn(
                f"the decoded cache {folder} cannot be trusted: {e}; rebuilding it from "
                + ", ".join(s["path"] for s in sources),
                DatasetCacheWarning,
                stacklevel=3,
            )
            with contextlib.suppress(OSError):
                (folder / CACHE_RECORD).unlink(missing_ok=True)
    arrays = decode()
    with contextlib.suppress(OSError):  # a read-only cache only costs the decode next time
        _write_cache(folder, sources, arrays)
    return arrays


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


def check_labels(y: np.ndarray, num_classes: int | None, source: str) -> np.ndarray:
    """``y`` unchanged if every label lies in ``0..num_classes-1`` (``None``: not checked)."""
    if num_classes is None:
        return y
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise DatasetError(
            f"{source} has label {y[bad[0]]} at index {bad[0]} ({bad.size} label(s) outside "
            f"0..{num_classes - 1}): the file is corrupt or not this dataset's"
        )
    return y


def _load_idx_pair(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    _check_split(name, split)
    keys = (f"{split}_images", f"{split}_labels")

    def decode() -> dict[str, np.ndarray]:
        x = parse_idx_images(*_read_with_source(name, keys[0]))
        content, source = _read_with_source(name, keys[1])
        y = check_labels(parse_idx_labels(content, source), _entry(name).num_classes, source)
        return {"x": x, "y": y}

    arrays = _cached(name, keys, decode)
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

    num_classes = _entry("cifar10").num_classes

    def decode() -> dict[str, np.ndarray]:
        xs, ys = [], []
        for key in keys:
            content, source = _read_with_source("cifar10", key)
            x, y = parse_cifar_bin(content, source)
            xs.append(x)
            ys.append(check_labels(y, num_classes, source))
        return {"x": np.concatenate(xs), "y": np.concatenate(ys)}

    arrays = _cached("cifar10", keys, decode)
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
