"""``report``: the HTML and Markdown report of the latest run of every deliverable of every layer.

:func:`layer8_meta.report.build_report` writes ``<runs>/report/report.html`` (``make report`` is
the same): status, headline metrics against the issues' targets, the plots, links to the
artifacts and trend charts over past runs from the registry. The page lives at a fixed place so a
bookmark keeps working; this run records what it found. Artifacts: ``summary.md`` (the counts).
"""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable
from layer8_meta.deliverables.common import open_registry, runs_dir_of
from layer8_meta.report import build_report


@deliverable(
    quick={"last_n": 5},
    full={},
    headline=["deliverables", "targets_met", "targets_missed", "layers_without_runs"],
)
def report(ctx: RunContext) -> dict[str, Any]:
    """Build the report from the registry; count deliverables, targets met and missed."""
    registry = open_registry(ctx)
    try:
        result = build_report(
            registry, runs_dir_of(ctx) / "report", index_report=registry.index(),
            last_n=ctx.config["last_n"],
        )  # fmt: skip
    finally:
        registry.close()
    lines = [
        f"- report: {result.html}",
        f"- deliverables: {result.deliverables}",
        f"- targets met / missed: {result.targets_met} / {result.targets_missed}",
        f"- layers without runs: {', '.join(result.layers_without_runs) or 'none'}",
    ]
    ctx.write_text("summary.md", "\n".join(lines) + "\n")
    print(f"report: {result.html}")
    return {
        "deliverables": result.deliverables,
        "targets_met": result.targets_met,
        "targets_missed": result.targets_missed,
        "layers_without_runs": len(result.layers_without_runs),
        "report": str(result.html),
    }
