"""Layer 8's deliverables, in run order: what ``make layer8`` builds from whatever runs exist."""

__all__: list[str] = []
