"""Token data for masked-language modelling: :class:`~.data.TokenText` with BERT's special tokens.

MLM needs ids that no text produces: ``[MASK]`` (what a selected token becomes) and ``[PAD]``
(filler when sentences of different lengths share a batch). They are trained into the BPE as
special tokens (never split, never merged, see :mod:`.bpe`), beside ``<|endoftext|>``. Everything
else is :class:`~.data.TokenText`'s: the same text, the same 90/10 character split, the same
random training windows and contiguous evaluation windows, the same cache (keyed here also by the
special tokens). The model learns the special ids from :meth:`MaskedText.model_kwargs`
(``mask_id``, ``pad_id``, ``special_ids``: ``???`` in ``configs/model/bert.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from layer0_math.files import atomic_write_bytes
from layer4_architectures.sequence.bpe import EOT, BPETokenizer
from layer4_architectures.sequence.data import CharTokenizer, TokenText

MASK_TOKEN, PAD_TOKEN = "[MASK]", "[PAD]"


@dataclass(kw_only=True)
class MaskedText(TokenText):
    """A BPE-tokenised text whose tokenizer's ``special_tokens`` hold ``[MASK]`` and ``[PAD]``."""

    SIZES: ClassVar[tuple[str, ...]] = ("vocab_size", "mask_id", "pad_id", "special_ids")

    special_tokens: list[str] = field(default_factory=lambda: [EOT, PAD_TOKEN, MASK_TOKEN])

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tokenizer != "bpe":
            raise ValueError(f"MaskedText needs data.tokenizer='bpe', got {self.tokenizer!r}")
        missing = [t for t in (MASK_TOKEN, PAD_TOKEN) if t not in self.special_tokens]
        if missing:
            raise ValueError(
                f"data.special_tokens={self.special_tokens} lacks {missing}: MLM needs both"
            )

    def _cache_folder(self, train_text: str, val_text: str) -> Path:
        base = super()._cache_folder(train_text, val_text)
        return base.with_name(base.name + "-mlm-" + "_".join(self.special_tokens).replace("|", ""))

    def _tokenizer(self, text: str, train_text: str, folder: Path) -> BPETokenizer | CharTokenizer:
        # TokenText trains with its default specials; train ours instead (then cache as it does)
        if not (folder / "tokenizer.json").is_file():
            tok = BPETokenizer.train(
                train_text, self.vocab_size, self.special_tokens, progress=self.progress
            )
            folder.mkdir(parents=True, exist_ok=True)
            return _cached(tok, folder)
        return super()._tokenizer(text, train_text, folder)

    def model_kwargs(self) -> dict[str, Any]:
        tok = self.tokenizer_object()
        ids = tok.special_tokens
        return {
            "vocab_size": tok.vocab_size,
            "mask_id": ids[MASK_TOKEN],
            "pad_id": ids[PAD_TOKEN],
            "special_ids": sorted(ids.values()),
        }


def _cached(tok: BPETokenizer, folder: Path) -> BPETokenizer:
    """Write ``tok`` where :meth:`TokenText._tokenizer` reads a cached tokenizer from."""
    record = {"tokenizer_kind": "bpe", "tokenizer": tok.to_dict()}
    atomic_write_bytes(folder / "tokenizer.json", json.dumps(record).encode())
    return tok
