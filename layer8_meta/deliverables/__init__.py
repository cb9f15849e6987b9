"""Layer 8's deliverables, in run order: what ``make layer8`` builds from whatever runs exist.

The registry first (everything else reads it), then the report of the latest run of every
deliverable, the docs site that embeds it, this week's reflection entry and the notes graph.
"""

from layer8_meta.deliverables.docs import docs
from layer8_meta.deliverables.notes_graph import notes_graph
from layer8_meta.deliverables.reflection import reflection
from layer8_meta.deliverables.report import report
from layer8_meta.deliverables.run_registry import run_registry

__all__ = ["run_registry", "report", "docs", "reflection", "notes_graph"]
