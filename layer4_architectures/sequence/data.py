"""Token data for language models: a text, a tokenizer, two memory-mapped id streams.

A language model reads a corpus as one long stream of token ids ``u_1 … u_N`` and learns
``p(u_{t+1} | u_{≤t})``. :class:`TokenText` turns a text of ``layer0_math.datasets`` (or a text
file of your own) into that stream, in four steps:

1. **Split.** The last 10% of the text's *characters* is held out as validation
   (:func:`.bpe.train_val_split`, the split the ``bpe_tokenizer`` deliverable uses); the
   tokenizer is trained on the first 90% only, so nothing about the validation text leaks into
   the vocabulary.
2. **Tokenize.** ``tokenizer: bpe`` trains a byte-level BPE (:mod:`.bpe`) of ``vocab_size`` ids on
   the train split; ``tokenizer: char`` uses the text's characters (nanoGPT's shakespeare_char).
   A trained BPE is cached in ``cache_dir()/tokenizers/<key>/`` where the key hashes the train
   text, the vocab size and the tokenizer's source code, so a changed tokenizer retrains.
3. **Store.** Both splits' ids are written once as uint16 ``.npy`` files (atomically) beside the
   tokenizer and opened memory-mapped: a corpus larger than memory costs nothing to open.
4. **Sample.** A training sample is a random window of ``seq_len + 1`` ids, ``x = u[s : s+T]``,
   ``y = u[s+1 : s+T+1]``, whose start is a counter-based hash of (seed, epoch, index)
   (:func:`layer3_framework.data.sample_key`): which windows a run sees depends on nothing but
   the seed and the position, so a resumed run sees exactly the windows the unbroken one did.
   Evaluation windows are contiguous and non-overlapping, covering the validation stream (its
   last ``< T`` ids aside), every validation token predicted exactly once.

**Bits per byte.** Loss in nats per token depends on the tokenizer (a bigger vocabulary makes
fewer, harder tokens), so models with different tokenizers compare in bits per byte of UTF-8
text. With ``L`` the mean loss in nats per predicted token and ``b`` the mean UTF-8 bytes per
predicted token (over the same tokens)::

    bpb = L / (b · ln 2)

:meth:`TokenText.bytes_per_token_val` is ``b`` over exactly the evaluated targets, so ``bpb`` is
the total information of the evaluated validation text divided by its size.

``source: synthetic`` builds a small patterned text (tests); its few distinct words run out of
pairs after a few hundred merges, so its BPE vocabulary is smaller than ``vocab_size`` asks.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from layer0_math.datasets import CharVocab, cache_dir, load
from layer0_math.files import atomic_file, atomic_write_bytes
from layer3_framework.data import CharDataset, DataBundle, DataModule, sample_key
from layer4_architectures.sequence import bpe
from layer4_architectures.sequence.bpe import BPETokenizer, train_val_split

TOKENIZERS = ("bpe", "char")
HOLDOUT = 0.1  # the last 10% of the characters is validation text
_SYNTHETIC_WORDS = (
    "once", "upon", "a", "time", "there", "was", "little", "girl", "named", "lily",
    "she", "liked", "to", "play", "with", "her", "red", "ball", "in", "the", "park",
    "one", "day", "saw", "big", "dog", "and", "said", "hello", "they", "were", "happy",
)  # fmt: skip


def bits_per_byte(nats_per_token: float, bytes_per_token: float) -> float:
    """``bpb = L / (b · ln 2)``: a loss in nats per token as bits per UTF-8 byte of text."""
    if bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token must be positive, got {bytes_per_token}")
    return nats_per_token / (bytes_per_token * math.log(2))


# ----------------------------------------------------------------------------- tokenizers


class CharTokenizer:
    """Characters as tokens: the vocabulary is the sorted set of the text's characters."""

    kind = "char"

    def __init__(self, chars: tuple[str, ...] | list[str]) -> None:
        self.vocab = CharVocab(tuple(chars))
        self.eot_id: int | None = None

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(CharVocab.from_text(text).chars)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(text).tolist()

    def encode_to_array(self, text: str) -> np.ndarray:
        return self.vocab.encode(text).astype(np.uint16)

    def decode(self, ids: Any, *, errors: str = "strict") -> str:
        return self.vocab.decode(np.asarray(ids, dtype=np.int64))

    def token_bytes(self, i: int) -> bytes:
        return self.vocab.chars[i].encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {"chars": list(self.vocab.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(d["chars"])


def load_tokenizer(preprocessing: dict[str, Any]) -> BPETokenizer | CharTokenizer:
    """The tokenizer a checkpoint's ``model_spec["preprocessing"]`` carries (no dataset needed)."""
    kind = preprocessing.get("tokenizer_kind")
    if kind == "bpe":
        return BPETokenizer.from_dict(preprocessing["tokenizer"])
    if kind == "char":
        return CharTokenizer.from_dict(preprocessing["tokenizer"])
    raise ValueError(
        f"preprocessing has tokenizer_kind={kind!r}; expected one of {list(TOKENIZERS)}"
    )


def _tokenizer_code_version() -> str:
    """A hash of the BPE module's source: a changed trainer invalidates cached tokenizers."""
    return hashlib.sha256(inspect.getsource(bpe).encode()).hexdigest()[:12]


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- datasets


class RandomWindows(Dataset):
    """``n`` random windows of a token stream per epoch: sample ``i`` of epoch ``e`` starts at
    ``sample_key(seed, e, i) mod (N - T)``; x = ids[s : s+T], y = ids[s+1 : s+T+1]."""

    def __init__(self, ids: np.ndarray, seq_len: int, n: int, *, seed: int = 0) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if ids.ndim != 1 or len(ids) < seq_len + 1:
            raise ValueError(
                f"need a 1-D token stream longer than seq_len={seq_len}, got shape {ids.shape}"
            )
        if n < 1:
            raise ValueError(f"the number of windows per epoch must be >= 1, got {n}")
        self.ids, self.seq_len, self.n, self.seed = ids, seq_len, n, seed
        self.starts = len(ids) - seq_len  # starts 0 .. N - T - 1 leave room for the target
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def start(self, index: int) -> int:
        return sample_key(self.seed, self.epoch, index) % self.starts

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.start(index)
        chunk = torch.from_numpy(np.asarray(self.ids[s : s + self.seq_len + 1], dtype=np.int64))
        return chunk[:-1], chunk[1:]  # (T,), (T,)


# ----------------------------------------------------------------------------- the data module


@dataclass(kw_only=True)
class TokenText(DataModule):
    """A text as token ids for language modelling (see the module docstring).

    ``name``: a text of ``layer0_math.datasets`` (tinystories, tiny_shakespeare); ``path``: a
    UTF-8 text file of your own instead (the real TinyStories download, say), split the same way.
    ``n_train``: random windows per epoch (None: ``N_train // seq_len``, one pass worth of
    tokens); ``n_test``: evaluation windows (None: all of the validation stream).
    """

    SIZES: ClassVar[tuple[str, ...]] = ("vocab_size",)

    seq_len: int = 256
    tokenizer: str = "bpe"  # bpe | char
    vocab_size: int = 4096  # bpe only: 256 bytes + merges + special tokens
    path: str | None = None
    progress: bool = False  # a progress bar while a BPE trains
    tok: Any = field(default=None, init=False, repr=False)
    streams: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len < 1:
            raise ValueError(f"data.seq_len must be >= 1, got {self.seq_len}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"unknown data.tokenizer {self.tokenizer!r}; expected one of {list(TOKENIZERS)}"
            )
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise ValueError(f"data.vocab_size must be >= 257 for bpe, got {self.vocab_size}")
        if self.path is not None and not Path(self.path).expanduser().is_file():
            raise ValueError(f"data.path={self.path!r} is not a file (expected a UTF-8 text)")

    # ---------------------------------------------------------------- building

    def text(self, seed: int = 0) -> str:
        """The whole corpus: the file at ``path``, the named dataset, or a synthetic text."""
        if self.path is not None:
            return Path(self.path).expanduser().read_text(encoding="utf-8")
        if self.source == "real":
            return str(load(self.name))
        rng = np.random.default_rng(seed)
        n_words = max(3000, 12 * ((self.n_test or 16) + 4) * (self.seq_len + 1))
        words = [_SYNTHETIC_WORDS[i] for i in rng.integers(len(_SYNTHETIC_WORDS), size=n_words)]
        return " ".join(w + (".\n" if i % 9 == 8 else "") for i, w in enumerate(words))

    def _build(self, seed: int) -> DataBundle:
        text = self.text(seed)
        train_text, val_text = train_val_split(text, HOLDOUT)
        folder = self._cache_folder(train_text, val_text)
        self.tok = self._tokenizer(text, train_text, folder)
        self.streams = {
            "train": self._stream(folder / "train.npy", train_text),
            "val": self._stream(folder / "val.npy", val_text),
        }
        train, val = self.streams["train"], self.streams["val"]
        n_train = self.n_train or max(1, (len(train) - 1) // self.seq_len)
        test = CharDataset(np.asarray(val), self.seq_len)
        if self.n_test is not None and self.n_test < len(test):
            test = CharDataset(np.asarray(val[: self.n_test * self.seq_len + 1]), self.seq_len)
        return DataBundle(train=RandomWindows(train, self.seq_len, n_train, seed=seed), test=test)

    def _cache_folder(self, train_text: str, val_text: str) -> Path:
        """``cache_dir()/tokenizers/<text>-<tokenizer>-<code>/``: one per corpus and tokenizer."""
        what = f"bpe{self.vocab_size}" if self.tokenizer == "bpe" else "char"
        texts = f"{_text_hash(train_text)}-{_text_hash(val_text)[:8]}"
        key = f"{texts}-{what}-{_tokenizer_code_version()}"
        return cache_dir() / "tokenizers" / key

    def _tokenizer(self, text: str, train_text: str, folder: Path) -> BPETokenizer | CharTokenizer:
        meta = folder / "tokenizer.json"
        if meta.is_file():
            return load_tokenizer(json.loads(meta.read_text()))
        if self.tokenizer == "char":
            # nanoGPT's vocabulary: every character of the corpus (validation text included)
            tok: BPETokenizer | CharTokenizer = CharTokenizer.train(text)
        else:
            tok = BPETokenizer.train(train_text, self.vocab_size, progress=self.progress)
        record = {"tokenizer_kind": self.tokenizer, "tokenizer": tok.to_dict()}
        atomic_write_bytes(meta, json.dumps(record).encode())
        return tok

    def _stream(self, path: Path, text: str) -> np.ndarray:
        """The ids of ``text`` as a read-only memory-mapped uint16 array (encoded once)."""
        if not path.is_file():
            ids = np.asarray(self.tok.encode_to_array(text))
            if ids.size and int(ids.max()) > np.iinfo(np.uint16).max:
                raise ValueError(f"token ids up to {int(ids.max())} do not fit uint16")
            buf = io.BytesIO()
            np.save(buf, ids.astype(np.uint16))
            with atomic_file(path) as f:
                f.write(buf.getvalue())
        return np.load(path, mmap_mode="r")

    # ---------------------------------------------------------------- what models need

    def tokenizer_object(self) -> BPETokenizer | CharTokenizer:
        self._built()
        return self.tok

    def bytes_per_token_val(self) -> float:
        """Mean UTF-8 bytes of the evaluated targets (every id the eval windows predict)."""
        test = self._built().test
        targets = np.asarray(test.ids[1 : len(test) * self.seq_len + 1])
        lengths = np.array([len(self.tok.token_bytes(i)) for i in range(self.tok.vocab_size)])
        return float(lengths[targets].mean())

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer_object().vocab_size}

    def preprocessing(self) -> dict[str, Any]:
        tok = self.tokenizer_object()
        return {
            "kind": "text",
            "seq_len": self.seq_len,
            "tokenizer_kind": self.tokenizer,
            "tokenizer": tok.to_dict(),
            "bytes_per_token_val": self.bytes_per_token_val(),
        }
