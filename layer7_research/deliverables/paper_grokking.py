"""``paper_grokking``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def paper_grokking(ctx: RunContext) -> dict:
    raise NotImplementedError("paper_grokking is being written")
