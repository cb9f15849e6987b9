"""``python -m layer8_meta notes graph|check|chain``: the notes graph from a shell.

- ``graph [--out DIR]`` writes ``notes.png`` and ``notes.html`` (default ``<runs>/notes/``)
  and prints orphans, dangling links, missing code and upward prerequisites;
- ``check`` prints the same and exits 1 on a dangling link, missing code or a prerequisite at
  a higher layer (0 otherwise);
- ``chain NOTE`` prints NOTE's prerequisite closure, ordered by layer, and the layers it
  touches: "which lower layer did I skip?".

``--notes DIR`` reads another folder (default ``<repo>/notes``). Bad input prints one
``error: ...`` line and exits 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layer0_math.lab import REPO_ROOT, runs_root
from layer8_meta.notes.graph import (
    Problems,
    chain,
    problems,
    render_html,
    render_png,
    resolver,
)
from layer8_meta.notes.parse import NoteError, key, load_notes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layer8_meta notes", description=__doc__)
    p.add_argument("--notes", type=Path, default=REPO_ROOT / "notes", help="notes folder")
    p.add_argument("--repo", type=Path, default=REPO_ROOT, help="root the code: paths start at")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("graph", help="render PNG + HTML and report problems")
    g.add_argument("--out", type=Path, default=None, help="output folder (<runs>/notes/)")
    sub.add_parser("check", help="exit 1 on dangling links, missing code, upward prerequisites")
    c = sub.add_parser("chain", help="a note's prerequisite chain down to layer 0")
    c.add_argument("note", help="note name (file stem) or title")
    return p


def report_lines(found: Problems) -> list[str]:
    """The problems, one line each, or a line saying there are none."""
    lines = [f"dangling link: {n} -> [[{t}]] (no such note)" for n, t in found.dangling]
    lines += [f"missing code: {n}: {ref}: {why}" for n, ref, why in found.missing_code]
    lines += [f"upward prerequisite: {a} builds on {b} (a higher layer)" for a, b in found.upward]
    lines += [f"orphan: {n} (no links in or out)" for n in found.orphans]
    lines += [f"cycle: {' -> '.join([*c, c[0]])}" for c in found.cycles]
    return lines or ["no problems: every link resolves, every code path exists"]


def _chain_lines(notes: dict, name: str) -> list[str]:
    pres = chain(notes, name)
    layers = sorted({n.layer for n in pres})
    lines = [f"layer {n.layer}: {n.name} ({n.title})" for n in pres]
    summary = f"{len(pres)} prerequisites over layers {', '.join(map(str, layers)) or 'none'}"
    if missing := _skipped(notes, name, layers):
        summary += f"; lower layers not on the chain: {missing}"
    lines.append(summary)
    return lines


def _skipped(notes: dict, name: str, layers: list[int]) -> str:
    """Layers below the note's own that its chain never passes through."""
    own = notes[resolver(notes)[key(name)]].layer
    return ", ".join(str(k) for k in range(own) if k not in layers)


def _run(args: argparse.Namespace) -> int:
    notes = load_notes(args.notes)
    if args.command == "chain":
        print("\n".join(_chain_lines(notes, args.note)))
        return 0
    found = problems(notes, args.repo)
    if args.command == "graph":
        out = args.out or runs_root() / "notes"
        print(f"wrote {render_png(notes, out / 'notes.png')}")
        print(f"wrote {render_html(notes, out / 'notes.html')}")
    print(f"{len(notes)} notes in {args.notes}")
    print("\n".join(report_lines(found)))
    return 1 if args.command == "check" and found.failing else 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (NoteError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
