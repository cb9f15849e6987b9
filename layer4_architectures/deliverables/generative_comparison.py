"""``generative_comparison``: PLACEHOLDER, being written (owner H6); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def generative_comparison(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("generative_comparison is being written")
