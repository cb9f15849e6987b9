"""Byte-level byte-pair encoding (BPE): the tokenizer of GPT-2, trained and applied from scratch.

A language model reads integers, so text must become a sequence of ids from a finite vocabulary.
Characters make sequences long (attention costs O(T²)); words make the vocabulary unbounded
and leave unknown words. BPE (Sennrich et al. 2016, after Gage 1994's compressor) starts from
an alphabet that can spell anything and *learns* frequent pieces.

**Alphabet.** Byte-level BPE (Radford et al. 2019) starts from the 256 byte values of the
UTF-8 text: every string, in any script, with emoji or invalid-looking mixtures, is spelled by
them, so no token is unknown and ``decode(encode(s)) == s`` for every ``s``.

**Training** (greedy, one merge at a time). Pre-tokenise the corpus (:mod:`.pretokenize`: split
around special tokens, then the GPT-2 regex) and count each distinct pre-token ``w`` (``n_w``
times), written as a sequence of token ids, initially its bytes. Then repeat until the
vocabulary has the requested size:

1. count every adjacent pair over the corpus, ``c(a, b) = Σ_w n_w · #{i : w_i = a, w_{i+1} = b}``;
2. take the most frequent pair ``(a*, b*) = argmax c(a, b)``;
3. add the token ``t = a* ‖ b*`` (the concatenation of their bytes) as merge number ``r``;
4. in every word, replace each non-overlapping occurrence of ``a* b*``, left to right, by ``t``.

Recounting every pair each time costs O(corpus) per merge. Only the words that contain
``(a*, b*)`` change, so this module keeps the counts ``c`` and an index pair → words holding
it, and after a merge subtracts the old pairs of the affected words and adds their new ones. The
argmax is a heap with lazy deletion: an entry whose count is out of date is skipped when popped.

**Ties** are broken as Hugging Face ``tokenizers``' ``BpeTrainer`` does (so that our merges can
be compared with it, id for id): among pairs of equal count the one with the smaller ids wins,
comparing ``(id(a), id(b))`` lexicographically, where a byte's HF id follows the code point of its
printable stand-in (:func:`~.pretokenize.bytes_to_unicode`) and merged tokens follow in order of
creation. When a merge builds a byte string that is already a token (``a‖bc`` after ``ab‖c``),
that token is reused, as in HF, so the vocabulary never holds one string twice.

**Encoding** applies the learned merges in the order they were learned: within each pre-token,
merge the adjacent pair of lowest rank ``r``, then again, until no adjacent pair is a merge. This
reproduces training's segmentation of the training words and gives a deterministic one
elsewhere. A pre-token's ids are cached (text is Zipfian: a few thousand pre-tokens are most of
it), which is what makes encoding fast in pure Python.

**Special tokens** (``<|endoftext|>``) are never split or merged. ``encode`` treats them like
``tiktoken``: ``allowed_special="all"`` encodes each occurrence of a special's string as its id,
a set allows those specials only and raises on the others, ``"none"`` encodes their text as
ordinary text, ``"none_raise"`` raises on any occurrence. Ids: bytes 0..255, merges 256..,
specials last (GPT-2 has ``<|endoftext|>`` = 50256).

Files: ``save`` writes GPT-2's formats (``vocab.json`` token → id and ``merges.txt`` one ``left
right`` pair per line, both in the printable byte alphabet) plus ``tokenizer_meta.json``; the
same reader loads GPT-2's own files (:meth:`BPETokenizer.from_gpt2_files`).
"""

from __future__ import annotations

import heapq
import json
import operator
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from layer0_math.files import atomic_write_bytes
from layer4_architectures.sequence.pretokenize import (
    GPT2_PATTERN,
    bytes_to_printable,
    bytes_to_unicode,
    pretokenize,
    split_on_specials,
    unicode_to_bytes,
)

__all__ = [
    "EOT",
    "GPT2_PATTERN",
    "BPETokenizer",
    "TokenizerError",
    "count_pretokens",
    "train_merges",
    "train_val_split",
]

EOT = "<|endoftext|>"
FORMAT = "dlstack-bpe-1"
MERGES_HEADER = "#version: 0.2"
_ALLOWED_MODES = ("all", "none", "none_raise")
_DECODE_ERRORS = ("strict", "replace", "ignore")
_CACHE_LIMIT = 1 << 18  # pre-tokens cached; beyond it the cache restarts (bounded memory)
# a merged token's tie-break key: after every byte's (≤ U+0143), in order of creation
_MERGED_KEY_OFFSET = 1024

Merge = tuple[int, int, int]  # (left id, right id, merged id)


class TokenizerError(ValueError):
    """A bad tokenizer file, id, special token or argument; the message names the value."""


def train_val_split(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """The first ``1 - val_fraction`` of ``text`` (by characters) and the held-out rest."""
    if not 0 < val_fraction < 1:
        raise TokenizerError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def count_pretokens(
    text: str, special_tokens: Collection[str] = (), pattern: str = GPT2_PATTERN
) -> Counter[bytes]:
    """How often each pre-token occurs, as UTF-8 bytes; special tokens are cut out, not counted."""
    counts: Counter[str] = Counter()
    for chunk, is_special in split_on_specials(text, special_tokens):
        if not is_special:
            counts.update(pretokenize(chunk, pattern))
    return Counter({_utf8(w): n for w, n in counts.items()})


def _merge_word(word: Sequence[int], a: int, b: int, new: int) -> list[int]:
    """``word`` with each non-overlapping ``a b``, left to right, replaced by ``new``."""
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


class _PairStats:
    """Pair counts over the corpus, the index pair → words, and the max-heap of counts."""

    def __init__(self, words: list[list[int]], counts: list[int], tie: list[int]):
        self.words, self.counts, self.tie = words, counts, tie
        self.count: dict[tuple[int, int], int] = defaultdict(int)
        self.where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for w, (word, n) in enumerate(zip(words, counts, strict=True)):
            for pair in pairwise(word):
                self.count[pair] += n
                self.where[pair].add(w)
        self.heap = [self._entry(p, c) for p, c in self.count.items()]
        heapq.heapify(self.heap)

    def _entry(self, pair: tuple[int, int], count: int) -> tuple[int, int, int, int, int]:
        a, b = pair  # heapq is a min-heap: most frequent first, then the smaller (HF) ids
        return (-count, self.tie[a], self.tie[b], a, b)

    def pop_best(self) -> tuple[int, int] | None:
        """The most frequent pair (ties: smaller ids), or None when no pair is left."""
        while self.heap:
            neg, _, _, a, b = heapq.heappop(self.heap)
            if self.count.get((a, b), 0) == -neg:  # else a stale entry: its count changed
                return a, b
        return None

    def merge(self, pair: tuple[int, int], new: int) -> None:
        """Merge ``pair`` into ``new`` in every word holding it; update counts, index and heap."""
        delta: dict[tuple[int, int], int] = defaultdict(int)
        for w in self.where.pop(pair):
            old, n = self.words[w], self.counts[w]
            merged = _merge_word(old, *pair, new)
            old_pairs, new_pairs = list(pairwise(old)), list(pairwise(merged))
            for p in old_pairs:
                delta[p] -= n
            for p in new_pairs:
                delta[p] += n
            for p in set(old_pairs).difference(new_pairs, [pair]):
                self.where[p].discard(w)
            for p in new_pairs:
                self.where[p].add(w)
            self.words[w] = merged
        for p, d in delta.items():
            if d:
                self._set(p, self.count[p] + d)

    def _set(self, pair: tuple[int, int], count: int) -> None:
        if count:
            self.count[pair] = count
            heapq.heappush(self.heap, self._entry(pair, count))
        else:
            del self.count[pair]
            self.where.pop(pair, None)


def train_merges(
    word_counts: Mapping[bytes, int], n_tokens: int, *, progress: bool = False
) -> tuple[list[bytes], list[Merge]]:
    """Learn merges until the vocabulary (bytes + merged tokens) has ``n_tokens`` entries.

    Stops earlier when no adjacent pair is left (every word is one token). Returns the
    vocabulary (id → bytes, ids 0..255 the bytes) and the merges ``(left, right, merged)``.
    """
    vocab = [bytes([b]) for b in range(256)]
    index = {t: i for i, t in enumerate(vocab)}
    tie = [ord(c) for c in bytes_to_unicode()]
    stats = _PairStats([list(w) for w in word_counts], list(word_counts.values()), tie)
    merges: list[Merge] = []
    with tqdm(total=max(n_tokens - 256, 0), desc="BPE merges", disable=not progress) as bar:
        while len(vocab) < n_tokens and (pair := stats.pop_best()) is not None:
            token = vocab[pair[0]] + vocab[pair[1]]
            new = index.get(token)
            if new is None:  # a new string (else: reuse the token it already is, like HF)
                new = index[token] = len(vocab)
                vocab.append(token)
                tie.append(_MERGED_KEY_OFFSET + new)
                bar.update()
            stats.merge(pair, new)
            merges.append((pair[0], pair[1], new))
    return vocab, merges


# ----------------------------------------------------------------------------------------------
# Helpers for ids, files and checks
# ----------------------------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TokenizerError(
            f"text holds {text[e.start : e.end]!r} at character {e.start}, which UTF-8 cannot "
            "encode (a lone surrogate); expected a valid Unicode string"
        ) from None


def _as_ids(ids: Iterable[Any]) -> list[int]:
    if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
        ids = ids.tolist()
    try:
        return [operator.index(i) for i in ids]
    except TypeError:
        bad = next(i for i in ids if not hasattr(i, "__index__"))
        raise TokenizerError(f"token ids must be integers, got {bad!r}") from None


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise TokenizerError(
            f"{path} is not valid UTF-8 at byte {e.start} (a truncated or corrupt file?)"
        ) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise TokenizerError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}): a truncated or corrupt file?"
        ) from None


def _check_specials(special_tokens: Iterable[str]) -> list[str]:
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise TokenizerError(f"a special token must be a non-empty string, got {s!r}")
    if len(set(specials)) != len(specials):
        raise TokenizerError(f"special tokens must be distinct, got {specials!r}")
    return specials


def _parse_merges(path: Path, token_id: Mapping[str, int]) -> list[Merge]:
    """GPT-2's merges.txt: ``left right`` per line (a ``#version`` line is skipped)."""
    merges: list[Merge] = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(
                f"{path} line {lineno}: expected 'left right' (two tokens), got {line!r} "
                "(a truncated file?)"
            )
        for t in (*parts, parts[0] + parts[1]):
            if t not in token_id:
                raise TokenizerError(
                    f"{path} line {lineno}: token {t!r} is not in vocab.json "
                    "(merges and vocabulary from different tokenizers?)"
                )
        merges.append((token_id[parts[0]], token_id[parts[1]], token_id[parts[0] + parts[1]]))
    return merges


def _vocab_from_json(path: Path, specials: Collection[str]) -> tuple[dict[str, int], list[bytes]]:
    token_id = _read_json(path)
    if not isinstance(token_id, dict) or sorted(token_id.values()) != list(range(len(token_id))):
        raise TokenizerError(f"{path}: expected a JSON object token -> id with ids 0..n-1")
    vocab = [b""] * len(token_id)
    for token, i in token_id.items():
        if token in specials:
            vocab[i] = token.encode("utf-8")
            continue
        try:
            vocab[i] = unicode_to_bytes(token)
        except KeyError:
            raise TokenizerError(
                f"{path}: token {token!r} (id {i}) is not written in GPT-2's byte alphabet and is "
                f"not one of the special tokens {sorted(specials)!r}"
            ) from None
    return token_id, vocab


def _vocab_of_dict(d: Mapping[str, Any], size: int) -> list[bytes | None]:
    vocab: list[bytes | None] = [None] * size
    for b, i in enumerate(d["byte_ids"]):
        vocab[i] = bytes([b])
    for s, i in d["special_tokens"].items():
        vocab[i] = s.encode("utf-8")
    for a, b, n in d["merges"]:
        left, right = vocab[a], vocab[b]
        if left is None or right is None:
            raise TokenizerError(f"merge {(a, b, n)} uses an id not built before it")
        vocab[n] = left + right
    return vocab


# ----------------------------------------------------------------------------------------------
# The tokenizer
# ----------------------------------------------------------------------------------------------


class BPETokenizer:
    """A byte-level BPE tokenizer: id → bytes table, ranked merges, special tokens, the regex."""

    GPT2_PATTERN = GPT2_PATTERN

    def __init__(
        self,
        vocab: Sequence[bytes],
        merges: Sequence[Merge],
        special_tokens: Mapping[str, int],
        pattern: str = GPT2_PATTERN,
    ):
        self._vocab = [bytes(t) for t in vocab]
        self._merges = [(int(a), int(b), int(n)) for a, b, n in merges]
        self.special_tokens = dict(special_tokens)
        self.pattern = pattern
        self._check_specials_table()
        self._byte_ids = self._single_byte_ids()
        self._check_merges()
        self._ranks = {(a, b): (r, n) for r, (a, b, n) in enumerate(self._merges)}
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = (EOT,),
        *,
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn a tokenizer of ``vocab_size`` ids (256 bytes + merges + specials) on ``text``.

        If ``text`` runs out of pairs first, the tokenizer is smaller (see ``vocab_size``).
        """
        specials = _check_specials(special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise TokenizerError(
                f"vocab_size must be an integer ≥ 256 + {len(specials)} special tokens "
                f"= {256 + len(specials)}, got {vocab_size!r}"
            )
        counts = count_pretokens(text, specials)
        vocab, merges = train_merges(counts, vocab_size - len(specials), progress=progress)
        special_ids = {s: len(vocab) + k for k, s in enumerate(specials)}
        return cls(vocab + [s.encode("utf-8") for s in specials], merges, special_ids)

    @classmethod
    def from_gpt2_files(
        cls, vocab_json: Path, merges_txt: Path, special_tokens: Sequence[str] = (EOT,)
    ) -> BPETokenizer:
        """Read GPT-2's (or HF's byte-level BPE) ``vocab.json`` + ``merges.txt``."""
        specials = _check_specials(special_tokens)
        token_id, vocab = _vocab_from_json(Path(vocab_json), specials)
        for s in specials:
            if s not in token_id:
                raise TokenizerError(f"special token {s!r} is not in {vocab_json}")
        merges = _parse_merges(Path(merges_txt), token_id)
        made = {n for _, _, n in merges} | {token_id[s] for s in specials}
        made |= {i for i, t in enumerate(vocab) if len(t) == 1}
        if len(made) != len(vocab):
            missing = next(i for i in range(len(vocab)) if i not in made)
            raise TokenizerError(
                f"{merges_txt}: its {len(merges)} merges build {len(made)} of the {len(vocab)} "
                f"tokens of {vocab_json} (none builds id {missing}, "
                f"{bytes_to_printable(vocab[missing])!r}): the merges file is truncated or "
                "belongs to another vocabulary"
            )
        return cls(vocab, merges, {s: token_id[s] for s in specials})

    # -- properties -------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The number of ids: bytes + merged tokens + special tokens."""
        return len(self._vocab)

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>``, or None when it is not a special token here."""
        return self.special_tokens.get(EOT)

    @property
    def merges(self) -> list[Merge]:
        """The merges in rank order, ``(left id, right id, merged id)``."""
        return list(self._merges)

    def token_bytes(self, i: int) -> bytes:
        """The bytes of token ``i``."""
        return self._vocab[self._check_id(i, None)]

    def __repr__(self) -> str:
        specials = sorted(self.special_tokens)
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, {specials})"

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, text: str, *, allowed_special: str | Collection[str] = "all") -> list[int]:
        """The ids of ``text``; ``allowed_special`` as in the module docstring (tiktoken's)."""
        allowed = self._allowed_specials(text, allowed_special)
        ids: list[int] = []
        for chunk, is_special in split_on_specials(text, allowed):
            if is_special:
                ids.append(self.special_tokens[chunk])
            else:
                ids.extend(self.encode_ordinary(chunk))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of ``text`` with special-token strings treated as ordinary text."""
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        ids: list[int] = []
        for piece in pretokenize(text, self.pattern):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = cache[piece] = self._bpe(_utf8(piece))
            ids.extend(piece_ids)
        return ids

    def encode_to_array(self, text: str) -> np.ndarray:
        """``encode(text)`` as uint16 (uint32 when ids exceed 65535), the form of a token corpus."""
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.uint32
        return np.asarray(self.encode(text), dtype=dtype)

    def _bpe(self, data: bytes) -> tuple[int, ...]:
        """One pre-token: merge the adjacent pair of lowest rank until none is a merge."""
        ids = [self._byte_ids[b] for b in data]
        ranks = self._ranks
        while len(ids) > 1:
            best, best_rank = None, len(ranks)
            for pair in pairwise(ids):
                r = ranks.get(pair)
                if r is not None and r[0] < best_rank:
                    best, best_rank = pair, r[0]
            if best is None:
                break
            ids = _merge_word(ids, *best, ranks[best][1])
        return tuple(ids)

    def _allowed_specials(self, text: str, allowed_special: str | Collection[str]) -> set[str]:
        if isinstance(allowed_special, str):
            if allowed_special not in _ALLOWED_MODES:
                raise TokenizerError(
                    f"allowed_special must be one of {_ALLOWED_MODES} or a set of special "
                    f"tokens, got {allowed_special!r}"
                )
            if allowed_special == "all":
                return set(self.special_tokens)
            allowed = set()
        else:
            allowed = set(allowed_special)
            unknown = sorted(allowed - set(self.special_tokens))
            if unknown:
                raise TokenizerError(
                    f"unknown special token(s) {unknown!r}; this tokenizer has "
                    f"{sorted(self.special_tokens)!r}"
                )
        if allowed_special == "none":
            return set()
        for s in self.special_tokens:
            if s not in allowed and s in text:
                raise TokenizerError(
                    f"text holds the special token {s!r} (at character {text.index(s)}), which "
                    f"is not allowed here; pass allowed_special including {s!r} to encode it as "
                    f"id {self.special_tokens[s]}, or 'none' to encode it as ordinary text"
                )
        return allowed

    # -- decoding ---------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[Any]) -> bytes:
        """The bytes of the tokens ``ids``, concatenated."""
        ids = _as_ids(ids)
        vocab = self._vocab
        for k, i in enumerate(ids):
            self._check_id(i, k)
        return b"".join([vocab[i] for i in ids])

    def decode(self, ids: Iterable[Any], *, errors: str = "strict") -> str:
        """The text of ``ids``. ``errors="strict"`` raises on bytes that are not UTF-8;
        ``"replace"`` writes U+FFFD for them, ``"ignore"`` drops them."""
        if errors not in _DECODE_ERRORS:
            raise TokenizerError(f"errors must be one of {_DECODE_ERRORS}, got {errors!r}")
        ids = _as_ids(ids)
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise TokenizerError(self._explain_bad_utf8(ids, data, e)) from None

    def _explain_bad_utf8(self, ids: list[int], data: bytes, e: UnicodeDecodeError) -> str:
        ends = np.cumsum([len(self._vocab[i]) for i in ids])
        k = int(np.searchsorted(ends, e.start, side="right"))
        return (
            f"the ids do not decode as UTF-8: bytes {data[e.start : e.end]!r} at byte {e.start} "
            f"({e.reason}) come from token {ids[k]} at position {k} (its bytes: "
            f"{self._vocab[ids[k]]!r}); decode(ids, errors='replace') writes U+FFFD instead"
        )

    def _check_id(self, i: int, position: int | None) -> int:
        if not 0 <= i < len(self._vocab):
            where = "" if position is None else f" at position {position}"
            raise TokenizerError(
                f"token id {i}{where} is not in the vocabulary (ids 0..{len(self._vocab) - 1})"
            )
        return i

    # -- a smaller tokenizer ----------------------------------------------------------------

    def truncated(self, n_merges: int) -> BPETokenizer:
        """The tokenizer of the first ``n_merges`` merges (ids renumbered, specials last).

        Training is greedy, so this equals training with ``n_merges`` merges on the same text.
        """
        if not 0 <= n_merges <= len(self._merges):
            raise TokenizerError(f"n_merges must be in 0..{len(self._merges)}, got {n_merges!r}")
        merges = self._merges[:n_merges]
        kept = sorted(set(self._byte_ids) | {n for _, _, n in merges})
        new_id = {old: k for k, old in enumerate(kept)}
        vocab = [self._vocab[i] for i in kept]
        specials = {s: len(vocab) + k for k, s in enumerate(self.special_tokens)}
        vocab += [s.encode("utf-8") for s in self.special_tokens]
        remapped = [(new_id[a], new_id[b], new_id[n]) for a, b, n in merges]
        return BPETokenizer(vocab, remapped, specials, self.pattern)

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (for a checkpoint's ``model_spec["preprocessing"]``)."""
        return {
            "format": FORMAT,
            "pattern": self.pattern,
            "vocab_size": self.vocab_size,
            "byte_ids": list(self._byte_ids),
            "merges": [list(m) for m in self._merges],
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BPETokenizer:
        """Rebuild from :meth:`to_dict`'s output."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise TokenizerError(f"expected a tokenizer dict of format {FORMAT!r}, got {got!r}")
        missing = sorted({"vocab_size", "byte_ids", "merges", "special_tokens", "pattern"} - set(d))
        if missing:
            raise TokenizerError(f"the tokenizer dict lacks the key(s) {missing}")
        size = int(d["vocab_size"])
        try:
            vocab = _vocab_of_dict(d, size)
        except IndexError:
            raise TokenizerError(f"the tokenizer dict uses ids outside 0..{size - 1}") from None
        if None in vocab:
            raise TokenizerError(f"id {vocab.index(None)} (of 0..{size - 1}) is built by nothing")
        return cls(vocab, [tuple(m) for m in d["merges"]], d["special_tokens"], d["pattern"])

    def _printable(self, i: int) -> str:
        token = self._vocab[i]
        if i in self._special_ids:
            return token.decode("utf-8")
        return bytes_to_printable(token)

    def save(self, folder: Path) -> list[Path]:
        """Write ``vocab.json``, ``merges.txt`` (GPT-2's formats) and ``tokenizer_meta.json``."""
        folder = Path(folder)
        vocab = {self._printable(i): i for i in range(self.vocab_size)}
        if len(vocab) != self.vocab_size:
            raise TokenizerError("two tokens share one string (a special equals a learned token)")
        lines = [MERGES_HEADER] + [
            f"{self._printable(a)} {self._printable(b)}" for a, b, _ in self._merges
        ]
        meta = {
            "format": FORMAT,
            "pattern": self.pattern,
            "vocab_size": self.vocab_size,
            "n_merges": len(self._merges),
            "special_tokens": self.special_tokens,
        }
        files = {
            "vocab.json": json.dumps(vocab, ensure_ascii=False, indent=1),
            "merges.txt": "\n".join(lines) + "\n",
            "tokenizer_meta.json": json.dumps(meta, ensure_ascii=False, indent=1),
        }
        for name, text in files.items():
            atomic_write_bytes(folder / name, text.encode("utf-8"))
        return [folder / name for name in files]

    @classmethod
    def load(cls, folder: Path, *, expected_vocab_size: int | None = None) -> BPETokenizer:
        """Read what :meth:`save` wrote; every mismatch names the file and what was expected."""
        folder = Path(folder)
        meta_path = folder / "tokenizer_meta.json"
        meta = _read_json(meta_path)
        keys = {"format", "pattern", "vocab_size", "n_merges", "special_tokens"}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or keys - set(meta):
            raise TokenizerError(
                f"{meta_path}: expected a tokenizer meta file of {FORMAT!r}, keys {sorted(keys)}"
            )
        vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
        tok = cls.from_gpt2_files(vocab_path, merges_path, list(meta["special_tokens"]))
        tok.pattern = meta["pattern"]
        checks = (
            (merges_path, "merges", len(tok._merges), meta["n_merges"]),
            (vocab_path, "tokens", tok.vocab_size, meta["vocab_size"]),
            (vocab_path, "tokens", tok.vocab_size, expected_vocab_size),
        )
        for path, what, got, want in checks:
            if want is not None and got != want:
                raise TokenizerError(f"{path} holds {got} {what}, expected {want}")
        if tok.special_tokens != meta["special_tokens"]:
            raise TokenizerError(
                f"{vocab_path}: special token ids {tok.special_tokens} differ from "
                f"{meta_path}'s {meta['special_tokens']}"
            )
        return tok

    # -- checks -----------------------------------------------------------------------------

    def _check_specials_table(self) -> None:
        self._special_ids = set(self.special_tokens.values())
        for s, i in self.special_tokens.items():
            if not 0 <= i < len(self._vocab) or self._vocab[i] != s.encode("utf-8"):
                raise TokenizerError(f"special token {s!r} has id {i}, which does not hold it")
        if len(self._special_ids) != len(self.special_tokens):
            raise TokenizerError(f"special tokens share ids: {self.special_tokens}")

    def _single_byte_ids(self) -> list[int]:
        byte_ids: dict[int, int] = {}
        for i, t in enumerate(self._vocab):
            if len(t) == 1 and i not in self._special_ids:
                byte_ids.setdefault(t[0], i)
        if len(byte_ids) != 256:
            missing = next(b for b in range(256) if b not in byte_ids)
            raise TokenizerError(f"the vocabulary lacks the single-byte token {bytes([missing])}")
        return [byte_ids[b] for b in range(256)]

    def _check_merges(self) -> None:
        size = len(self._vocab)
        for r, (a, b, n) in enumerate(self._merges):
            ok = all(0 <= i < size for i in (a, b, n)) and n not in self._special_ids
            if not ok or self._vocab[n] != self._vocab[a] + self._vocab[b]:
                raise TokenizerError(f"merge {r} {(a, b, n)}: token {n} is not {a} + {b}")
