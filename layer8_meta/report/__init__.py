"""The report: one static page (and its Markdown twin) of the latest run of every deliverable.

``python -m layer8_meta report`` (``make report``) indexes ``runs/`` into the registry and
writes ``runs/report/report.html``, ``report.md`` and ``assets/``: per layer, each deliverable
the code defines (a never-run one as *not run*, with its command), the status of its newest
finished run (a failure with its error line), preset, seed, commit, seconds, its headline
metrics checked against the issues' goals (``layer8_meta/targets.yaml``: met / missed / no
target), its plots copied beside the page, links to its artifacts, and a trend chart of its
headline metrics over past ok runs. The folder opens anywhere, offline.

Modules: :mod:`.targets` (the goals and their verdicts), :mod:`.collect` (code catalog × runs),
:mod:`.summary` (the top of the page), :mod:`.media` (assets, trend charts),
:mod:`.render_html`, :mod:`.render_md`, :mod:`.build` (:func:`build_report`), :mod:`.cli`.
"""

from layer8_meta.report.build import ReportResult, build_report
from layer8_meta.report.targets import Target, load_targets

__all__ = ["ReportResult", "Target", "build_report", "load_targets"]
