"""Pre-tokenisation for byte-level BPE: what happens to text before any merge is learned or applied.

BPE never merges across the boundaries drawn here, so this step decides what a token *can* be.

1. **Special tokens are cut out first.** A special token such as ``<|endoftext|>`` is a control
   symbol, not text: :func:`split_on_specials` splits the text around every occurrence (the
   longest special wins where two overlap), so no merge can ever cross or build one.
2. **The GPT-2 regex splits the rest into pre-tokens** (Radford et al. 2019, ``encoder.py``)::

       's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

   English contractions, then a run of letters, of digits or of other symbols, each with at
   most one leading space (so " cat" and "cat" are different pre-tokens: a word's start is
   visible), then whitespace. ``\\s+(?!\\S)`` keeps the last space of a run of spaces for the
   word that follows it. The ``regex`` package is needed for the Unicode classes ``\\p{L}``
   and ``\\p{N}``.
3. **Bytes, shown as printable characters.** Each pre-token is UTF-8 encoded and BPE works on
   its bytes, so every string is representable with a base alphabet of 256 and there is no
   unknown token. GPT-2's files write each byte as one printable Unicode character
   (:func:`bytes_to_unicode`: bytes that are printable Latin-1 stand for themselves, the other
   68 are shifted to U+0100 and above, so a space is written ``Ġ`` and a newline ``Ċ``).
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache

import regex

__all__ = [
    "GPT2_PATTERN",
    "bytes_to_printable",
    "bytes_to_unicode",
    "compiled",
    "pretokenize",
    "split_on_specials",
    "unicode_to_bytes",
]

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@cache
def compiled(pattern: str) -> regex.Pattern:
    """The compiled pre-tokenisation pattern (compiled once per pattern)."""
    return regex.compile(pattern)


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """Split ``text`` (which holds no special token) into pre-tokens; they concatenate to it."""
    return compiled(pattern).findall(text)


@cache
def _specials_re(specials: tuple[str, ...]) -> regex.Pattern:
    # longest first, so that of two overlapping specials the longer is matched
    alternatives = sorted(specials, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")


def split_on_specials(text: str, specials: Collection[str]) -> list[tuple[str, bool]]:
    """``text`` as ``(chunk, is_special)`` pieces, in order, empty chunks dropped."""
    if not specials:
        return [(text, False)] if text else []
    parts = _specials_re(tuple(sorted(specials))).split(text)
    # re.split with one group alternates: text, special, text, special, ..., text
    return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]


@cache
def bytes_to_unicode() -> tuple[str, ...]:
    """GPT-2's printable stand-in character for each byte value 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    for n, b in enumerate(shifted):
        table[b] = chr(256 + n)
    return tuple(table[b] for b in range(256))


@cache
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(bytes_to_unicode())}


def unicode_to_bytes(s: str) -> bytes:
    """Invert :func:`bytes_to_unicode` on a whole token string; ``KeyError`` on a foreign char."""
    table = _unicode_to_byte()
    return bytes(table[c] for c in s)


def bytes_to_printable(b: bytes) -> str:
    """A token's bytes written in GPT-2's printable alphabet (the form of vocab.json/merges.txt)."""
    table = bytes_to_unicode()
    return "".join(table[x] for x in b)
