"""The report as one HTML page: no external CSS, JavaScript or fonts (it must open offline), and
every piece of text that comes from a run escaped (an error message is data, never markup).

Status is a word in a coloured badge (ok, failed, not run, ...), never colour alone; each layer
and each deliverable has an anchor (``#layer4_architectures-gpt_tinystories``) to link to.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from layer8_meta.registry import RunRow
from layer8_meta.report.collect import Check, Entry, Section
from layer8_meta.report.media import Media
from layer8_meta.report.summary import (
    LayerCount,
    Summary,
    commit_text,
    fmt,
    run_line,
    seconds_text,
)

GENERATOR = "dlstack layer8_meta report"
CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a;
       background: #f6f7f9; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; background: #fff; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; } h2 { border-bottom: 2px solid #dde1e6;
padding-bottom: .2rem; margin-top: 2.5rem; } h3 { margin: 1.6rem 0 .3rem; font-size: 1.15rem; }
code { background: #eef0f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d5d9de; padding: .25rem .55rem; text-align: left;
         vertical-align: top; }
th { background: #eef0f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .7em; font-size: .82rem;
         font-weight: 600; border: 1px solid; white-space: nowrap; }
.ok, .met { color: #0b5d1e; background: #e3f4e6; border-color: #8ccf98; }
.failed, .missed { color: #8a1111; background: #fde8e8; border-color: #ee9c9c; }
.not-run, .no-target, .no-value { color: #4a525c; background: #f0f1f3; border-color: #c4c9cf; }
.interrupted, .stopped, .running { color: #7a4a00; background: #fff3dc; border-color: #e8bd6a; }
.meta { color: #4a525c; font-size: .88rem; margin: 0 0 .4rem; }
.error { background: #fde8e8; border-left: 4px solid #c62828; padding: .4rem .7rem;
         white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .85rem; }
.note { background: #fff3dc; border-left: 4px solid #e0a020; padding: .3rem .7rem; }
.entry { border-top: 1px solid #e4e7eb; margin-top: 1.2rem; }
.figures { display: flex; flex-wrap: wrap; gap: .8rem; }
figure { margin: 0; max-width: 340px; } figure.trend { max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #d5d9de; }
figcaption { font-size: .8rem; color: #4a525c; word-break: break-all; }
nav ul { columns: 3; padding-left: 1.2rem; } .links a { margin-right: .8rem; }
"""


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def badge(word: str) -> str:
    return f'<span class="badge {e(word.replace(" ", "-"))}">{e(word)}</span>'


def anchor(layer: str, deliverable: str | None = None) -> str:
    return e(layer if deliverable is None else f"{layer}-{deliverable}")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """An HTML table; cells are already HTML (escape before), columns in ``numeric`` right."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- the summary


def _layer_row(c: LayerCount) -> list[str]:
    link = f'<a href="#{anchor(c.layer)}">{e(c.layer)}</a>'
    counts = [c.deliverables, c.ok, c.failed, c.other, c.not_run, c.met, c.missed]
    return [link, *(str(n) for n in counts), f"<code>{e(c.command)}</code>" if c.command else ""]


def _recent_rows(runs: Sequence[RunRow]) -> list[list[str]]:
    return [
        [
            e(r.start.replace("T", " ")),
            f'<a href="#{anchor(r.layer, r.deliverable)}">{e(r.layer)}/{e(r.deliverable)}</a>',
            badge(r.status),
            e(fmt(r.preset)),
            e(commit_text(r)),
            e(seconds_text(r.seconds)),
        ]
        for r in runs
    ]


def summary_html(s: Summary) -> str:
    ok, total = s.total("ok"), s.total("deliverables")
    parts = [
        '<section id="summary"><h2>Summary</h2>',
        f'<p id="totals"><strong>{ok} of {total} deliverables ok</strong>: '
        f"{s.total('failed')} failed, {s.total('other')} interrupted, stopped or running, "
        f"{s.total('not_run')} not run yet. Targets: <strong>{s.total('met')} met</strong>, "
        f"<strong>{s.total('missed')} missed</strong>.</p>",
        table(
            [
                "layer",
                "deliverables",
                "ok",
                "failed",
                "interrupted / running",
                "not run",
                "targets met",
                "missed",
                "command that runs it",
            ],
            [_layer_row(c) for c in s.layers],
            numeric={1, 2, 3, 4, 5, 6, 7},
        ),
    ]
    if s.without_runs:
        items = "".join(
            f"<li>{e(c.layer)}: run <code>{e(c.command)}</code></li>" for c in s.without_runs
        )
        parts.append(f'<p class="note">No runs yet of:</p><ul id="no-runs">{items}</ul>')
    if s.missed:
        items = "".join(
            f'<li><a href="#{anchor(layer, deliverable)}">{e(layer)}/{e(deliverable)}</a>: '
            f"<code>{e(c.metric)}</code> = {e(fmt(c.value))}, target {e(c.target.text())}</li>"
            for layer, deliverable, c in s.missed
            if c.target is not None
        )
        parts.append(f'<h3>Targets missed</h3><ul id="missed">{items}</ul>')
    for c in s.layers:
        if c.error:
            parts.append(
                f'<p class="error">{e(c.layer)}: its deliverables would not import: '
                f"{e(c.error)}</p>"
            )
    parts += [
        "<p><strong>Commits</strong> of the runs shown: "
        + (", ".join(f"<code>{e(k)}</code> ({n})" for k, n in s.commits) or "none")
        + "<br>",
        "<strong>Hardware</strong>: "
        + ("; ".join(f"{e(k)} ({n})" for k, n in s.hardware) or "none")
        + "</p>",
    ]
    if s.recent:
        parts.append(
            "<h3>Latest runs</h3>"
            + table(
                ["start", "deliverable", "status", "preset", "commit", "seconds"],
                _recent_rows(s.recent),
                numeric={5},
            )
        )
    if s.skipped:
        items = "".join(f"<li><code>{e(p)}</code>: {e(why)}</li>" for p, why in s.skipped)
        parts.append(
            f"<details><summary>{len(s.skipped)} run folders skipped by the registry "
            f"(unreadable or half-written manifests)</summary><ul>{items}</ul></details>"
        )
    return "".join(parts) + "</section>"


# ----------------------------------------------------------------------------- one deliverable


def _target_cell(check: Check) -> str:
    t = check.target
    if t is None:
        return ""
    return e(t.text()) + (f"<br><small>{e(t.note)}</small>" if t.note else "")


def _checks_html(entry: Entry) -> str:
    if not entry.checks:
        return ""
    rows = [
        [
            f"<code>{e(c.metric)}</code>",
            e(fmt(c.value)),
            _target_cell(c),
            badge(c.verdict),
        ]
        for c in entry.checks
    ]
    return table(["metric", "value", "target", "verdict"], rows, numeric={1})


def _status_html(entry: Entry) -> str:
    parts = []
    run = entry.run
    if run is None:
        return f'<p class="meta">Not run yet: <code>{e(entry.expected.command)}</code> runs it.</p>'
    parts.append(f'<p class="meta">{e(run_line(run))}</p>')
    if run.error:
        parts.append(f'<p class="error">{e(run.error)}</p>')
    if entry.in_progress is not None:
        parts.append(
            f'<p class="note">A newer run ({e(entry.in_progress.run_id[:8])}, started '
            f"{e(entry.in_progress.start.replace('T', ' '))}) is recorded as still "
            "running.</p>"
        )
    if run.status == "running":
        parts.append(
            '<p class="note">Running now (or killed without a record): no run of it '
            "has finished yet.</p>"
        )
    elif run.status != "ok":
        last = entry.last_ok
        parts.append(
            '<p class="note">'
            + (
                f"The last ok run was {e(last.run_id[:8])} of {e(last.start.replace('T', ' '))}."
                if last
                else "No run of it has finished ok yet."
            )
            + "</p>"
        )
    if not entry.in_code:
        parts.append('<p class="note">The code no longer defines this deliverable.</p>')
    return "".join(parts)


def _figures_html(media: Media) -> str:
    parts = []
    if media.trend:
        parts.append(
            f'<figure class="trend"><img src="{e(media.trend)}" alt="trend of the '
            'headline metrics over past ok runs"><figcaption>headline metrics over '
            "past ok runs</figcaption></figure>"
        )
    shots = "".join(
        f'<figure><a href="{e(href)}"><img src="{e(href)}" alt="{e(cap)}"></a>'
        f"<figcaption>{e(cap)}</figcaption></figure>"
        for href, cap in media.images
    )
    if shots:
        parts.append(f'<div class="figures">{shots}</div>')
    if media.artifacts:
        links = "".join(f'<a href="{e(href)}">{e(label)}</a>' for label, href in media.artifacts)
        parts.append(f'<p class="links">Artifacts: {links}</p>')
    return "".join(parts)


def _history_html(entry: Entry) -> str:
    if len(entry.history) < 2:
        return ""
    rows = _recent_rows(entry.history)
    return (
        f"<details><summary>last {len(rows)} runs</summary>"
        + table(
            ["start", "deliverable", "status", "preset", "commit", "seconds"], rows, numeric={5}
        )
        + "</details>"
    )


def entry_html(entry: Entry, media: Media) -> str:
    return (
        f'<article class="entry" id="{anchor(entry.layer, entry.deliverable)}">'
        f"<h3>{e(entry.deliverable)} {badge(entry.status)}</h3>"
        + _status_html(entry)
        + _checks_html(entry)
        + _figures_html(media)
        + _history_html(entry)
        + "</article>"
    )


def page(
    summary: Summary, sections: Sequence[Section], media: Mapping[tuple[str, str], Media]
) -> str:
    """The whole report page."""
    shown = [s for s in sections if s.entries]
    nav = "".join(
        f'<li><a href="#{anchor(s.group.layer)}">{e(s.group.layer)}</a></li>' for s in shown
    )
    body = [
        "<h1>dlstack report: the latest run of every deliverable</h1>",
        f'<p class="meta">Generated {e(summary.generated)} from the run registry of '
        f"<code>{e(summary.runs_dir)}</code>. Each deliverable shows its newest finished run: "
        "status, headline metrics against the issues' targets "
        "(<code>layer8_meta/targets.yaml</code>), its plots and artifacts. Rebuild with "
        "<code>make report</code>.</p>",
        summary_html(summary),
        f"<nav><h2>Contents</h2><ul>{nav}</ul></nav>",
    ]
    for s in shown:
        body.append(f'<section id="{anchor(s.group.layer)}"><h2>{e(s.group.layer)}</h2>')
        if s.group.command:
            body.append(f'<p class="meta">Runs with <code>{e(s.group.command)}</code>.</p>')
        body += [entry_html(x, media[(x.layer, x.deliverable)]) for x in s.entries]
        body.append("</section>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>dlstack report {e(summary.generated)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
