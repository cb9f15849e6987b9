"""``gpt_shakespeare_char``: PLACEHOLDER, being written (owner H3); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def gpt_shakespeare_char(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("gpt_shakespeare_char is being written")
