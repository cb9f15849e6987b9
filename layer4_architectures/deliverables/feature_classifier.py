"""``feature_classifier``: PLACEHOLDER, being written (owner H6); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def feature_classifier(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("feature_classifier is being written")
