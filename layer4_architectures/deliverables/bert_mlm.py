"""``bert_mlm``: PLACEHOLDER, being written (owner H4); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def bert_mlm(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("bert_mlm is being written")
