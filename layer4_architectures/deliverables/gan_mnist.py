"""``gan_mnist``: PLACEHOLDER, being written (owner H6); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def gan_mnist(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("gan_mnist is being written")
