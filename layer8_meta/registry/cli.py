"""``python -m layer8_meta runs | show | compare | best | index``: the registry from a shell.

Each command first brings the registry up to date (an incremental index: only changed manifests
are read), then answers::

    runs [--layer 4] [--deliverable X] [--status failed] [--since 7d] [--kind K] [--limit N]
         [--top-level]            (sub-runs, inside another run's folder, say whose they are)
    show RUN                      everything of one run (RUN: an id, a unique prefix, a folder)
    compare RUN RUN               the config keys that differ and each metric's delta
    best --metric val_loss [--mode min|max] [--layer ...]   (mode from the name unless given)
    index                         what the index added, updated, removed and skipped (and why)

Bad input (an unknown run, an ambiguous prefix, a bad filter) prints one ``error: ...`` line and
exits 2.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from layer8_meta.registry.db import STATUSES, IndexReport
from layer8_meta.registry.query import Comparison, Registry, RunRow, check_mode

HEADLINE_COUNT = 3


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a header row and a rule; cells are never cut."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def headline(row: RunRow, count: int = HEADLINE_COUNT) -> str:
    """The first ``count`` metrics of the run, as the deliverable wrote them."""
    return ", ".join(f"{k}={fmt(v)}" for k, v in list(row.metrics.items())[:count])


def runs_table(rows: Sequence[RunRow]) -> str:
    """One line per run: id prefix, what, preset, status, start, seconds, headline metrics."""
    header = ("id", "layer", "deliverable", "preset", "status", "start", "seconds", "metrics")
    body = [
        (
            r.run_id[:8],
            r.layer,
            r.deliverable + (f" (in {r.parent_id[:8]})" if r.nested and r.parent_id else ""),
            fmt(r.preset),
            r.status,
            r.start.replace("T", " "),
            fmt(r.seconds),
            headline(r) or (r.error or ""),
        )
        for r in rows
    ]
    return table([header, *body])


def show_text(r: RunRow) -> str:
    """Everything the registry knows of one run, its error and folder included."""
    fields = [
        ("run", r.run_id),
        ("parent", fmt(r.parent_id)),
        ("what", f"{r.layer}/{r.deliverable} (kind {r.kind}, preset {r.preset}, seed {r.seed})"),
        ("status", r.status + (f": {r.error}" if r.error else "")),
        ("start", f"{r.start}, {fmt(r.seconds)} s"),
        ("code", f"commit {fmt(r.commit)}" + (" (dirty tree)" if r.dirty else "")),
        ("device", f"{fmt(r.device)}, peak RSS {fmt(r.rss_mib)} MiB, CUDA {fmt(r.cuda_mib)} MiB"),
        ("host", json.dumps(r.host, sort_keys=True)),
        ("path", str(r.path)),
        ("config", f"{r.config_hash}\n" + json.dumps(r.config, indent=2, sort_keys=True)),
    ]
    lines = [f"{k:>7}: {v}" for k, v in fields]
    lines.append("metrics:" if r.metrics else "metrics: none")
    lines += [f"  {k} = {fmt(v)}" for k, v in r.metrics.items()]
    return "\n".join(lines)


def compare_text(c: Comparison) -> str:
    """The config diff and the metric deltas as two tables."""
    a, b = c.a.run_id[:8], c.b.run_id[:8]
    out = [
        f"a = {a} {c.a.layer}/{c.a.deliverable} {c.a.start}",
        f"b = {b} {c.b.layer}/{c.b.deliverable} {c.b.start}",
        "",
    ]
    if c.config:
        rows = [("config key", "a", "b")]
        rows += [(k, repr(x), repr(y)) for k, (x, y) in c.config.items()]
        out.append(table(rows))
    else:
        out.append("configs are equal")
    if c.metrics:
        rows = [("metric", "a", "b", "b - a")]
        rows += [(k, fmt(x), fmt(y), fmt(d)) for k, (x, y, d) in c.metrics.items()]
        out += ["", table(rows)]
    return "\n".join(out)


# ----------------------------------------------------------------------------- commands


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", help="a number (4) or a package name (layer4_architectures)")
    p.add_argument("--deliverable")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--since", help="an age (7d, 12h, 30m) or an ISO date")
    p.add_argument("--kind", help="deliverable, train, multirun, benchmark, ...")
    p.add_argument("--preset")
    p.add_argument(
        "--top-level", action="store_true", help="leave out sub-runs (runs inside another run)"
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    p.add_argument("--db", type=Path, default=None, help="default: <runs>/registry.sqlite")


def _runs(reg: Registry, a: argparse.Namespace, _: IndexReport) -> int:
    filters = {k: getattr(a, k) for k in ("layer", "deliverable", "status", "kind", "preset")}
    nested = False if a.top_level else None
    rows = reg.runs(**filters, since=a.since, limit=a.limit, nested=nested)
    print(runs_table(rows) if rows else "no runs match")
    print(f"{len(rows)} run(s) from {reg.db_path}")
    return 0


def _show(reg: Registry, a: argparse.Namespace, _: IndexReport) -> int:
    print(show_text(reg.get(a.run)))
    return 0


def _compare(reg: Registry, a: argparse.Namespace, _: IndexReport) -> int:
    print(compare_text(reg.compare(a.a, a.b)))
    return 0


def _best(reg: Registry, a: argparse.Namespace, _: IndexReport) -> int:
    mode = check_mode(a.mode, a.metric)
    filters = {k: getattr(a, k) for k in ("layer", "deliverable", "status", "kind", "preset")}
    given = {k: v for k, v in filters.items() if v}
    row = reg.best(a.metric, mode, **given, since=a.since, nested=False if a.top_level else None)
    how = "given" if a.mode else "inferred from the name"
    print(f"best {a.metric} ({mode}, {how}): {row.metrics[a.metric]:.6g}")
    print(runs_table([row]))
    print(f"path: {row.path}")
    return 0


def _index(reg: Registry, a: argparse.Namespace, report: IndexReport) -> int:
    print(report.summary() + f" -> {reg.db_path}")
    for path, why in report.skipped:
        print(f"  skipped {path}: {why}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error: ...`` line (and exit 2), as every layer 8
    command's bad input is."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        print(f"error: {message} (usage: {usage})", file=sys.stderr)
        raise SystemExit(2)


def parser(command: str) -> tuple[argparse.ArgumentParser, Callable[..., int]]:
    p = Parser(prog=f"python -m layer8_meta {command}")
    _common(p)
    if command == "runs":
        _filters(p)
        p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
        return p, _runs
    if command == "show":
        p.add_argument("run", help="a run id, a unique prefix of one, or a run folder")
        return p, _show
    if command == "compare":
        p.add_argument("a")
        p.add_argument("b")
        return p, _compare
    if command == "best":
        p.add_argument("--metric", required=True)
        p.add_argument("--mode", choices=("min", "max"), default=None)
        _filters(p)
        return p, _best
    return p, _index


def main(argv: list[str]) -> int:
    """``argv[0]`` is the command (runs, show, compare, best, index)."""
    command, rest = (argv[0], argv[1:]) if argv else ("runs", [])
    p, fn = parser(command)
    args = p.parse_args(rest)
    try:
        reg = Registry.open(args.runs_dir, args.db)
        return fn(reg, args, reg.index())
    except (ValueError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
