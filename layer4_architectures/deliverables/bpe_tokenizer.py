"""``bpe_tokenizer``: PLACEHOLDER, being written (owner H1); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def bpe_tokenizer(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("bpe_tokenizer is being written")
