"""The dataset loaders: formats, the lookup order, checksums and the errors a user sees."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer0_math import datasets
from layer0_math.datasets import (
    ByteVocab,
    CharVocab,
    DatasetError,
    FileSpec,
    parse_cifar_bin,
    parse_idx_images,
    parse_idx_labels,
)


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No shared data, an empty cache, no downloads."""
    monkeypatch.setenv("DLSTACK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLSTACK_OFFLINE", "1")
    (tmp_path / "data").mkdir()
    return tmp_path


def _idx_images(x: np.ndarray) -> bytes:
    header = np.array([2051, *x.shape], dtype=">u4").tobytes()
    return header + x.astype(np.uint8).tobytes()


def _idx_labels(y: np.ndarray) -> bytes:
    return np.array([2049, len(y)], dtype=">u4").tobytes() + y.astype(np.uint8).tobytes()


def test_idx_round_trip():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 7)
    np.testing.assert_array_equal(parse_idx_images(_idx_images(x)), x)
    labels = parse_idx_labels(_idx_labels(y))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)


def test_idx_bad_magic_and_length_are_named():
    with pytest.raises(DatasetError, match="magic 2049, expected 2051"):
        parse_idx_images(_idx_labels(np.zeros(30)), "f.idx")
    with pytest.raises(DatasetError, match="header says 2x2x2"):
        parse_idx_images(_idx_images(np.zeros((2, 2, 2)))[:-1])


def test_cifar_record_layout():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1])
    records = np.concatenate([labels[:, None].astype(np.uint8), images.reshape(4, -1)], axis=1)
    x, y = parse_cifar_bin(records.tobytes())
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(DatasetError, match="3073"):
        parse_cifar_bin(records.tobytes()[:-5])


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match=r"unknown dataset 'imagenet'.*cifar10"):
        datasets.load("imagenet")
    with pytest.raises(DatasetError, match=r"unknown split 'valid'.*\['train', 'test'\]"):
        datasets.load_mnist("valid")


def test_missing_dataset_lists_every_place_looked(empty_env, monkeypatch):
    monkeypatch.setenv("DLSTACK_DATA", f"{empty_env / 'a'}:{empty_env / 'b'}")
    with pytest.raises(DatasetError) as err:
        datasets.load_tiny_shakespeare()
    msg = str(err.value)
    for place in (
        "a/tinyshakespeare/input.txt",
        "b/tinyshakespeare/input.txt",
        "cache/dlstack/tinyshakespeare/input.txt",
    ):
        assert place in msg, msg
    assert "DLSTACK_OFFLINE=1" in msg and "DLSTACK_DATA" in msg


def test_wrong_checksum_names_the_file(empty_env):
    spec = datasets.REGISTRY["tiny_shakespeare"].files["text"]
    bad = empty_env / "data" / spec.path
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"x" * spec.size)  # right size, wrong content
    with pytest.raises(DatasetError, match=r"input\.txt has sha256 .* expected 86c4e6aa"):
        datasets.load_tiny_shakespeare()


def test_truncated_gzip_names_the_file(empty_env):
    spec = datasets.REGISTRY["tinystories"].files["text"]
    path = empty_env / "data" / spec.path
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(5000))[:2000])
    with pytest.raises(DatasetError, match=r"valid-sample\.txt\.gz is truncated"):
        datasets.load_tinystories()


def test_short_file_is_reported_as_truncated(empty_env):
    spec = datasets.REGISTRY["tiny_shakespeare"].files["text"]
    path = empty_env / "data" / spec.path
    path.parent.mkdir(parents=True)
    path.write_text("First Citizen:")
    with pytest.raises(DatasetError, match="holds 14 bytes of content, expected 1,115,394"):
        datasets.load_tiny_shakespeare()


def _fake_text_entry(monkeypatch, source, content: bytes, sha: str | None = None):
    spec = FileSpec(
        "fake/text.txt",
        sha or hashlib.sha256(content).hexdigest(),
        len(content),
        url=source.as_uri(),
    )
    entry = datasets.DatasetEntry("fake", {"text": spec}, source="a test")
    monkeypatch.setitem(datasets.REGISTRY, "fake", entry)
    return spec


def test_download_goes_to_the_cache_and_is_checked(empty_env, monkeypatch):
    monkeypatch.delenv("DLSTACK_OFFLINE")
    source = empty_env / "server" / "text.txt"
    source.parent.mkdir()
    source.write_bytes(b"hello world\n")
    _fake_text_entry(monkeypatch, source, b"hello world\n")
    assert datasets.read_file("fake", "text") == b"hello world\n"
    assert (empty_env / "cache" / "dlstack" / "fake" / "text.txt").read_bytes() == b"hello world\n"


def test_download_with_bad_checksum_fails(empty_env, monkeypatch):
    monkeypatch.delenv("DLSTACK_OFFLINE")
    source = empty_env / "server.txt"
    source.write_bytes(b"tampered!!!\n")
    _fake_text_entry(monkeypatch, source, b"hello world\n")
    with pytest.raises(DatasetError, match="sha256"):
        datasets.read_file("fake", "text")


def test_download_failure_is_explained(empty_env, monkeypatch):
    monkeypatch.delenv("DLSTACK_OFFLINE")
    _fake_text_entry(monkeypatch, empty_env / "nowhere.txt", b"x")
    with pytest.raises(DatasetError, match="the download failed"):
        datasets.read_file("fake", "text")


@given(st.text(min_size=1, max_size=200))
def test_char_vocab_round_trip(text):
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.max() < len(vocab)
    assert vocab.decode(ids) == text


@given(st.text(max_size=200))
def test_byte_vocab_round_trip(text):
    assert ByteVocab().decode(ByteVocab().encode(text)) == text


def test_vocab_errors_name_the_value():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        vocab.decode([0, 5])


def test_digits_shapes():
    x, y = datasets.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8 and x.max() == 16
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_mnist_matches_its_published_statistics():
    x, y = datasets.load_mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(
        np.bincount(y), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    assert abs(x.mean() / 255 - 0.1307) < 1e-4 and abs(x.std() / 255 - 0.3081) < 1e-4
    xt, yt = datasets.load_mnist("test")
    assert xt.shape == (10000, 28, 28)
    np.testing.assert_array_equal(yt[:5], [7, 2, 1, 0, 4])


@pytest.mark.data
def test_cifar10_matches_its_readme_and_second_load_is_mapped():
    x, y = datasets.load_cifar10("test")
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    mean = x.reshape(10000, 3, -1).mean(axis=(0, 2)) / 255
    np.testing.assert_allclose(mean, [0.4941, 0.4851, 0.4504], atol=1e-4)
    x2, y2 = datasets.load_cifar10("test")
    assert isinstance(x2, np.memmap)
    np.testing.assert_array_equal(x2, x)


@pytest.mark.data
@pytest.mark.slow
def test_cifar10_train():
    x, y = datasets.load_cifar10("train")
    assert x.shape == (50000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)


@pytest.mark.data
def test_text_datasets():
    text = datasets.load_tiny_shakespeare()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert len(CharVocab.from_text(text)) == 65
    stories = datasets.load_tinystories()
    assert stories.startswith("Spot. Spot saw the shiny car")


def test_diabetes_scaled_and_raw_agree():
    x, y = datasets.load_diabetes()
    raw, y_raw = datasets.load_diabetes(scaled=False)
    assert x.shape == raw.shape == (442, len(datasets.DIABETES_FEATURES)) and y.shape == (442,)
    np.testing.assert_array_equal(y, y_raw)
    centred = raw - raw.mean(axis=0)  # sklearn scales centred columns to unit Euclidean norm
    np.testing.assert_allclose(x, centred / np.linalg.norm(centred, axis=0), atol=1e-6)


# ----------------------------------------------------------------------------- fault injection


def register_idx_dataset(setitem, data_dir, name: str) -> None:
    """``setitem(name, entry)`` with an entry for the IDX files in data_dir/name (test split)."""
    files = {}
    for kind in ("images", "labels"):
        rel = f"{name}/test-{kind}.gz"
        content = gzip.decompress((Path(data_dir) / rel).read_bytes())
        files[f"test_{kind}"] = FileSpec(rel, hashlib.sha256(content).hexdigest(), len(content))
    entry = datasets.DatasetEntry(name, files, "a test", splits=("test",), num_classes=10)
    setitem(name, entry)


def _fake_idx_dataset(monkeypatch, env, name: str, x: np.ndarray, y: np.ndarray) -> None:
    """Replace registry entry ``name`` by a small IDX dataset (test split) under env/data."""
    (env / "data" / name).mkdir(parents=True, exist_ok=True)
    for kind, content in (("images", _idx_images(x)), ("labels", _idx_labels(y))):
        (env / "data" / name / f"test-{kind}.gz").write_bytes(gzip.compress(content))
    register_idx_dataset(
        lambda key, entry: monkeypatch.setitem(datasets.REGISTRY, key, entry), env / "data", name
    )


def _small_idx(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), rng.integers(0, 10, 50)


def _decoded_folders(env) -> list:
    return sorted((env / "cache" / "dlstack" / "decoded").iterdir())


def _assert_loads(loader, x, y, *, mapped: bool) -> None:
    x2, y2 = loader("test")
    assert isinstance(x2, np.memmap) == mapped
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


_KILLED_DURING_SAVE = """
import os, signal
import numpy as np
from layer0_math import datasets

def save_then_die(file, arr, *args, **kwargs):
    # a process killed by SIGKILL half-way through writing the first decoded array
    f = open(file, "wb") if isinstance(file, (str, os.PathLike)) else file
    f.write(b"\\x93NUMPY" + bytes(100))
    getattr(f, "flush", lambda: None)()
    os.kill(os.getpid(), signal.SIGKILL)

np.save = save_then_die
datasets.load_fashion_mnist("test")
"""


def test_a_process_killed_during_the_first_decode_does_not_poison_the_cache(empty_env):
    import os
    import signal
    import subprocess
    import sys

    # the registry's own fashion_mnist entry (checked by size only), with synthetic content
    n = 10_000
    x = (np.arange(n * 28 * 28) % 251).astype(np.uint8).reshape(n, 28, 28)
    y = np.arange(n) % 10
    for rel, content in (
        ("fashion-mnist/t10k-images-idx3-ubyte.gz", _idx_images(x)),
        ("fashion-mnist/t10k-labels-idx1-ubyte.gz", _idx_labels(y)),
    ):
        (empty_env / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (empty_env / "data" / rel).write_bytes(gzip.compress(content, compresslevel=1))
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_DURING_SAVE], env=os.environ.copy(), capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    (folder,) = _decoded_folders(empty_env)
    leftovers = list(folder.iterdir())
    assert leftovers, "the killed process should have left its partial file behind"
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)  # decodes again
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=True)  # reads the cache
    temps = [p for p in leftovers if p.exists() and p.name not in {"x.npy", "y.npy"}]
    assert temps, "a young temporary file may be another process's write: it stays"
    for p in temps:  # once stale, the dead process's temporary file is removed, never read
        os.utime(p, (0, 0))
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=True)
    assert not [p for p in temps if p.exists()]


def test_processes_decoding_at_once_share_the_cache_without_warnings(empty_env, monkeypatch):
    import os
    import subprocess
    import sys

    x, y = _small_idx(4)
    _fake_idx_dataset(monkeypatch, empty_env, "fashion_mnist", x, y)
    # each child registers the same small entry, then loads: all decode and write at once
    child = (
        "import warnings\n"
        "from layer0_math import datasets\n"
        "from tests.layer0.test_datasets import register_idx_dataset\n"
        "warnings.simplefilter('error', datasets.DatasetCacheWarning)\n"
        f"register_idx_dataset(datasets.REGISTRY.__setitem__, {str(empty_env / 'data')!r}, "
        "'fashion_mnist')\n"
        "for _ in range(5):\n"
        "    x, y = datasets.load_fashion_mnist('test')\n"
        "    assert x.shape == (50, 28, 28) and y.shape == (50,)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child],
            cwd=Path(__file__).parents[2],  # the repository root: tests.layer0 importable
            env=os.environ.copy(),
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=True)


def test_a_cache_with_flipped_bytes_is_rebuilt_with_a_warning(empty_env, monkeypatch):
    x, y = _small_idx(0)
    _fake_idx_dataset(monkeypatch, empty_env, "fashion_mnist", x, y)
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)
    (folder,) = _decoded_folders(empty_env)
    with open(folder / "x.npy", "r+b") as f:  # one flipped byte in the pixel data
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.warns(datasets.DatasetCacheWarning, match=r"x\.npy.*rebuilding"):
        _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=True)  # repaired, no warning


def test_another_datasets_cache_in_its_place_is_rebuilt(empty_env, monkeypatch):
    x, y = _small_idx(1)
    other_x, other_y = _small_idx(2)
    _fake_idx_dataset(monkeypatch, empty_env, "fashion_mnist", x, y)
    _fake_idx_dataset(monkeypatch, empty_env, "mnist", other_x, other_y)
    datasets.load_fashion_mnist("test")
    datasets.load_mnist("test")
    fashion, mnist = _decoded_folders(empty_env)
    assert fashion.name.startswith("fashion_mnist") and mnist.name.startswith("mnist")
    (fashion / "x.npy").write_bytes((mnist / "x.npy").read_bytes())  # one array swapped
    with pytest.warns(datasets.DatasetCacheWarning, match=r"x\.npy"):
        _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)
    for f in mnist.iterdir():  # the whole folder, record included
        (fashion / f.name).write_bytes(f.read_bytes())
    with pytest.warns(datasets.DatasetCacheWarning, match="made from other files"):
        _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)
    (fashion / "cache.json").write_text("{not json")
    with pytest.warns(datasets.DatasetCacheWarning, match="record"):
        _assert_loads(datasets.load_fashion_mnist, x, y, mapped=False)
    _assert_loads(datasets.load_fashion_mnist, x, y, mapped=True)


def test_an_unreadable_file_says_permission_denied(empty_env, monkeypatch):
    import builtins

    spec = datasets.REGISTRY["tinystories"].files["text"]
    path = empty_env / "data" / spec.path
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"Once upon a time"))
    path.chmod(0)
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # root reads a chmod-000 file anyway: deny like a user
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(DatasetError, match=r"permission denied.*valid-sample\.txt\.gz") as err:
        datasets.load_tinystories()
    assert "truncated" not in str(err.value)


def test_labels_outside_the_class_range_are_refused(empty_env, monkeypatch):
    x, y = _small_idx(3)
    y[7] = 10
    _fake_idx_dataset(monkeypatch, empty_env, "fashion_mnist", x, y)
    with pytest.raises(DatasetError, match=r"test-labels\.gz.*label 10 at index 7.*0\.\.9"):
        datasets.load_fashion_mnist("test")


def test_cifar_labels_outside_the_class_range_are_refused(empty_env, monkeypatch):
    labels = np.array([3, 0, 12, 1], dtype=np.uint8)
    images = np.zeros((4, 3072), dtype=np.uint8)
    content = np.concatenate([labels[:, None], images], axis=1).tobytes()
    rel = "cifar/test_batch.bin.gz"
    (empty_env / "data" / "cifar").mkdir()
    (empty_env / "data" / rel).write_bytes(gzip.compress(content))
    spec = FileSpec(rel, hashlib.sha256(content).hexdigest(), len(content))
    entry = datasets.DatasetEntry(
        "cifar10", {"test_batch": spec}, "a test", splits=("train", "test"), num_classes=10
    )
    monkeypatch.setitem(datasets.REGISTRY, "cifar10", entry)
    with pytest.raises(DatasetError, match=r"test_batch\.bin\.gz.*label 12 at index 2"):
        datasets.load_cifar10("test")
