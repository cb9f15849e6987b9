"""``notes_graph``: the knowledge graph of ``notes/`` drawn (PNG and interactive HTML) and checked.

Each note is one concept with ``[[wikilinks]]`` to its prerequisites and ``code:`` paths to where
it is implemented (:mod:`layer8_meta.notes`). The run fails on a dangling link, a missing code path
or a prerequisite at a higher layer, the same rule as ``python -m layer8_meta notes check``.
Artifacts: ``notes.png``, ``notes.html``, ``problems.txt``.
"""

from __future__ import annotations

from typing import Any

from layer0_math.lab import REPO_ROOT, RunContext, deliverable
from layer8_meta.notes.cli import report_lines
from layer8_meta.notes.graph import problems, render_html, render_png
from layer8_meta.notes.parse import load_notes


@deliverable(quick={"notes": "notes"}, full={}, headline=["notes", "links", "orphans"])
def notes_graph(ctx: RunContext) -> dict[str, Any]:
    """Render the graph of the seeded notes and check their links and code paths."""
    notes = load_notes(REPO_ROOT / ctx.config["notes"])
    found = problems(notes, REPO_ROOT)
    render_png(notes, ctx.path("notes.png"))
    render_html(notes, ctx.path("notes.html"))
    ctx.write_text("problems.txt", "\n".join(report_lines(found)) + "\n")
    if found.failing:
        raise RuntimeError("; ".join(report_lines(found)))
    print(f"notes graph: {ctx.path('notes.html')}")
    return {
        "notes": len(notes),
        "links": sum(len(n.links) for n in notes.values()),
        "orphans": len(found.orphans),
        "dangling": len(found.dangling),
    }
