"""Building the report: the registry's latest run of every deliverable, as HTML and Markdown.

::

    registry ──gather──> sections (per layer: each deliverable, its newest finished run,
       │                 its metrics checked against targets.yaml)
       ├──summarize──> the top: counts per layer, commits, hardware, latest runs
       └──media──────> assets/: each run's plots and small artifacts copied, trend charts drawn
                       ──render──> report.html + report.md (written atomically, last)

The output folder is the report's own: a ``report.html``, ``report.md`` or ``assets/`` there that
this command did not write (no generator mark) is an error, never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from layer0_math.files import atomic_write_bytes
from layer8_meta.registry import IndexReport, Registry
from layer8_meta.report import render_html, render_md
from layer8_meta.report.collect import Group, code_catalog, gather
from layer8_meta.report.media import MARK, Assets, Media, copy_run, trend_chart
from layer8_meta.report.summary import summarize
from layer8_meta.report.targets import Target, load_targets

MD_TITLE = "# dlstack report"


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    deliverables: int
    layers_without_runs: list[str]
    targets_met: int
    targets_missed: int


def check_out_dir(out_dir: Path) -> None:
    """A ValueError when ``out_dir`` holds a report file or assets folder someone else wrote."""
    page, md, assets = out_dir / "report.html", out_dir / "report.md", out_dir / "assets"
    if page.exists() and render_html.GENERATOR not in page.read_text(errors="replace")[:2000]:
        raise ValueError(f"{page} exists and was not written by the report; pass another --out")
    if md.exists() and not md.read_text(errors="replace").startswith(MD_TITLE):
        raise ValueError(f"{md} exists and was not written by the report; pass another --out")
    if assets.is_dir() and any(assets.iterdir()) and not (assets / MARK).exists():
        raise ValueError(f"{assets} exists and is not the report's own; pass another --out")


def build_report(
    registry: Registry,
    out_dir: Path,
    *,
    catalog: Sequence[Group] | None = None,
    targets: Sequence[Target] | None = None,
    index_report: IndexReport | None = None,
    last_n: int = 5,
) -> ReportResult:
    """Write ``out_dir/report.html``, ``report.md`` and ``assets/`` from ``registry`` (index it
    first). ``catalog`` (default: the code's, :func:`code_catalog`) says which deliverables
    exist; ``targets`` default to ``layer8_meta/targets.yaml``; ``index_report`` lists the
    manifests the index skipped."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    catalog = code_catalog() if catalog is None else catalog
    targets = load_targets() if targets is None else targets
    sections = gather(registry, catalog, targets, last_n)
    summary = summarize(registry, sections, index_report.skipped if index_report else ())
    assets = Assets(out_dir)
    media: dict[tuple[str, str], Media] = {}
    for entry in (x for s in sections for x in s.entries):
        media[(entry.layer, entry.deliverable)] = m = copy_run(assets, entry)
        if entry.run is not None:
            m.trend = trend_chart(registry, assets, entry)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    atomic_write_bytes(html_path, render_html.page(summary, sections, media).encode("utf-8"))
    atomic_write_bytes(md_path, render_md.page(summary, sections, media).encode("utf-8"))
    assets.prune()
    return ReportResult(
        html=html_path,
        markdown=md_path,
        deliverables=summary.total("deliverables"),
        layers_without_runs=[c.layer for c in summary.without_runs],
        targets_met=summary.total("met"),
        targets_missed=summary.total("missed"),
    )
