"""``guided_diffusion``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def guided_diffusion(ctx: RunContext) -> dict:
    raise NotImplementedError("guided_diffusion is being written")
