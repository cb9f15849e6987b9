"""``architecture_study``: PLACEHOLDER, being written; replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def architecture_study(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("architecture_study is being written")
