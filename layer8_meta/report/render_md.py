"""The report as Markdown: the same summary, statuses and target verdicts as the HTML page, for
a terminal, a diff between two reports, or a pull request. Plots are linked, not inlined."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layer8_meta.report.collect import Entry, Section
from layer8_meta.report.media import Media
from layer8_meta.report.summary import Summary, commit_text, fmt, run_line, seconds_text


def cell(text: object) -> str:
    """A table cell: pipes escaped, line breaks flattened."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def summary_md(s: Summary) -> list[str]:
    lines = [
        "## Summary",
        "",
        f"**{s.total('ok')} of {s.total('deliverables')} deliverables ok**: "
        f"{s.total('failed')} failed, {s.total('other')} interrupted, stopped or running, "
        f"{s.total('not_run')} not run yet. Targets: **{s.total('met')} met**, "
        f"**{s.total('missed')} missed**.",
        "",
    ]
    lines += table(
        [
            "layer",
            "deliverables",
            "ok",
            "failed",
            "other",
            "not run",
            "targets met",
            "missed",
            "command",
        ],
        [
            [
                c.layer,
                c.deliverables,
                c.ok,
                c.failed,
                c.other,
                c.not_run,
                c.met,
                c.missed,
                f"`{c.command}`" if c.command else "",
            ]
            for c in s.layers
        ],
    )
    if s.without_runs:
        lines += ["No runs yet of:", ""]
        lines += [f"- {c.layer}: run `{c.command}`" for c in s.without_runs] + [""]
    if s.missed:
        lines += ["### Targets missed", ""]
        lines += [
            f"- {layer}/{deliverable}: `{c.metric}` = {fmt(c.value)}, target {c.target.text()}"
            for layer, deliverable, c in s.missed
            if c.target is not None
        ] + [""]
    lines += [
        f"- {x.layer}: its deliverables would not import: {cell(x.error)}"
        for x in s.layers
        if x.error
    ]
    lines += [
        "Commits of the runs shown: " + (", ".join(f"`{k}` ({n})" for k, n in s.commits) or "none"),
        "",
        "Hardware: " + ("; ".join(f"{k} ({n})" for k, n in s.hardware) or "none"),
        "",
    ]
    if s.recent:
        lines += ["### Latest runs", ""]
        lines += table(
            ["start", "deliverable", "status", "preset", "commit", "seconds"],
            [
                [
                    r.start.replace("T", " "),
                    f"{r.layer}/{r.deliverable}",
                    r.status,
                    fmt(r.preset),
                    commit_text(r),
                    seconds_text(r.seconds),
                ]
                for r in s.recent
            ],
        )
    if s.skipped:
        lines += [f"{len(s.skipped)} run folders skipped by the registry:", ""]
        lines += [f"- `{p}`: {cell(why)}" for p, why in s.skipped] + [""]
    return lines


def entry_md(entry: Entry, media: Media) -> list[str]:
    lines = [f"### {entry.deliverable}: {entry.status}", ""]
    run = entry.run
    if run is None:
        return [*lines, f"Not run yet: `{entry.expected.command}` runs it.", ""]
    lines += [run_line(run), ""]
    if run.error:
        error = cell(run.error).replace("`", "'")
        lines += [f"Error: `{error}`", ""]
    if entry.in_progress is not None:
        lines += [f"A newer run ({entry.in_progress.run_id[:8]}) is recorded as still running.", ""]
    if run.status == "running":
        lines += ["Running now (or killed without a record): no run of it has finished yet.", ""]
    elif run.status != "ok":
        last = entry.last_ok
        lines += [
            f"The last ok run was {last.run_id[:8]} of {last.start}."
            if last
            else "No run of it has finished ok yet.",
            "",
        ]
    if entry.checks:
        lines += table(
            ["metric", "value", "target", "verdict"],
            [
                [f"`{c.metric}`", fmt(c.value), c.target.text() if c.target else "", c.verdict]
                for c in entry.checks
            ],
        )
    links = (
        ([f"[trend]({media.trend})"] if media.trend else [])
        + [f"[{cap}]({href})" for href, cap in media.images]
        + [f"[{label}]({href})" for label, href in media.artifacts]
    )
    if links:
        lines += ["Files: " + " · ".join(links), ""]
    return lines


def page(
    summary: Summary, sections: Sequence[Section], media: Mapping[tuple[str, str], Media]
) -> str:
    lines = [
        "# dlstack report: the latest run of every deliverable",
        "",
        f"Generated {summary.generated} from the run registry of `{summary.runs_dir}` "
        "(targets: `layer8_meta/targets.yaml`; rebuild with `make report`).",
        "",
        *summary_md(summary),
    ]
    for s in sections:
        if not s.entries:
            continue
        lines += [f"## {s.group.layer}", ""]
        if s.group.command:
            lines += [f"Runs with `{s.group.command}`.", ""]
        for x in s.entries:
            lines += entry_md(x, media[(x.layer, x.deliverable)])
    return "\n".join(lines).rstrip() + "\n"
