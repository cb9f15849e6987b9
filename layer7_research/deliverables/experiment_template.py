"""``experiment_template``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def experiment_template(ctx: RunContext) -> dict:
    raise NotImplementedError("experiment_template is being written")
