"""Literature triage: ``papers.yaml`` lists the papers this repository implements and the ones
queued to read, and closes the paper-to-code loop.

Each entry of ``papers.yaml`` (repo root)::

    - id: ddpm                                   # short, unique: what ``mark`` takes
      title: "Denoising Diffusion Probabilistic Models"
      link: https://arxiv.org/abs/2006.11239
      status: implemented                        # queued | reading | implemented | reproduced
      tags: [generative, diffusion]
      layer: 4                                   # the layer that implements it (0-8)
      deliverable: ddpm_mnist                    # a deliverable of that layer, and/or
      code: [layer4_architectures/generative/diffusion.py::Diffusion]   # path or path::symbol

``python -m layer8_meta papers [list|queue|mark ID_OR_TITLE STATUS|check] [--file PATH]``:

- ``list`` (the default) every paper; ``queue`` the queued and reading ones, reading first;
- ``mark`` sets one paper's status by rewriting only its ``status:`` line (atomically), so the
  file's order, keys and comments stay as they were;
- ``check`` exits 1 if an implemented or reproduced paper names no code and no deliverable, a
  code path that does not exist (or lacks the symbol), or a deliverable its layer does not have
  (the layer's ``deliverables`` package, read with :func:`layer0_math.lab.deliverables_of`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from layer0_math.files import atomic_write_bytes
from layer0_math.lab import REPO_ROOT, deliverables_of, spec_of
from layer8_meta.notes.parse import code_problem

STATUSES = ("queued", "reading", "implemented", "reproduced")
DONE = ("implemented", "reproduced")
REQUIRED = ("id", "title", "link", "status")


class PaperError(ValueError):
    """A papers.yaml that cannot be used, or a paper or status that does not exist."""


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    link: str
    status: str
    tags: tuple[str, ...]
    layer: int | None
    deliverable: str | None
    code: tuple[str, ...]


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise PaperError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return status


def _paper(entry: Any, where: str) -> Paper:
    if not isinstance(entry, dict):
        raise PaperError(f"{where}: expected a mapping with {', '.join(REQUIRED)}, got {entry!r}")
    missing = [k for k in REQUIRED if not entry.get(k)]
    if missing:
        raise PaperError(f"{where}: missing {', '.join(missing)}")
    layer = entry.get("layer")
    if layer is not None and (not isinstance(layer, int) or not 0 <= layer <= 8):
        raise PaperError(f"{where}: 'layer' must be an integer 0-8, got {layer!r}")
    if not str(entry["link"]).startswith(("https://", "http://")):
        raise PaperError(f"{where}: 'link' must be a URL, got {entry['link']!r}")
    try:
        check_status(entry["status"])
    except PaperError as exc:
        raise PaperError(f"{where}: {exc}") from None
    return Paper(
        id=str(entry["id"]),
        title=str(entry["title"]),
        link=str(entry["link"]),
        status=entry["status"],
        tags=tuple(entry.get("tags") or ()),
        layer=layer,
        deliverable=entry.get("deliverable"),
        code=tuple(entry.get("code") or ()),
    )


def parse_papers(text: str, source: str = "papers.yaml") -> list[Paper]:
    """The papers of a papers.yaml text; PaperError naming the entry and field when malformed."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PaperError(f"{source} is not YAML: {exc}") from exc
    entries = data.get("papers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise PaperError(f"{source}: expected a top-level 'papers:' list")
    papers = [_paper(e, f"{source}: paper {i + 1}") for i, e in enumerate(entries)]
    ids = [p.id for p in papers]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        raise PaperError(f"{source}: duplicate id(s) {', '.join(dupes)}")
    return papers


def load_papers(path: Path) -> list[Paper]:
    if not path.is_file():
        raise PaperError(f"{path} does not exist (expected a papers.yaml)")
    return parse_papers(path.read_text(encoding="utf-8"), str(path))


def find(papers: list[Paper], what: str) -> Paper:
    """By id, else by title (exact, then a unique substring; case not counting)."""
    low = what.lower()
    for match in (
        [p for p in papers if p.id == what],
        [p for p in papers if p.title.lower() == low],
        [p for p in papers if low in p.title.lower()],
    ):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise PaperError(f"{what!r} matches {len(match)} papers: {[p.id for p in match]}")
    raise PaperError(f"no paper {what!r}; expected an id, one of {[p.id for p in papers]}")


def mark(path: Path, what: str, status: str) -> Paper:
    """Set one paper's status in ``path`` (only its ``status:`` line changes); the new paper."""
    check_status(status)
    text = path.read_text(encoding="utf-8")
    paper = find(parse_papers(text, str(path)), what)
    start = re.search(rf"^\s*-\s+id:\s*['\"]?{re.escape(paper.id)}['\"]?\s*(#.*)?$", text, re.M)
    if start is None:
        raise PaperError(f"{path}: cannot find the line '- id: {paper.id}' to edit")
    after = re.compile(r"^\s*-\s+id:", re.M).search(text, start.end())
    end = after.start() if after else len(text)
    line = re.compile(r"^(\s*status:\s*)([\w'\"]+)", re.M).search(text, start.end(), end)
    if line is None:
        raise PaperError(f"{path}: paper {paper.id!r} has no 'status:' line of its own")
    new = text[: line.start(2)] + status + text[line.end(2) :]
    changed = find(parse_papers(new, str(path)), paper.id)
    if changed.status != status:
        raise PaperError(f"{path}: rewriting {paper.id!r} did not change its status; not written")
    atomic_write_bytes(path, new.encode("utf-8"))
    return changed


@functools.cache
def deliverable_names(layer: int) -> tuple[str, ...]:
    """The deliverables of layer ``layer`` (empty if the layer is not built)."""
    packages = sorted(REPO_ROOT.glob(f"layer{layer}_*/deliverables"))
    if not packages:
        return ()
    module = importlib.import_module(f"{packages[0].parent.name}.deliverables")
    return tuple(spec_of(fn).name for fn in deliverables_of(module))


def problems(papers: list[Paper], repo_root: Path = REPO_ROOT) -> list[str]:
    """What ``check`` fails on, one line per problem, for the implemented/reproduced papers."""
    found = []
    for p in (p for p in papers if p.status in DONE):
        if not p.code and not p.deliverable:
            found.append(f"{p.id}: {p.status} but names no code and no deliverable")
        found += [
            f"{p.id}: code {ref}: {why}"
            for ref in p.code
            if (why := code_problem(ref, repo_root)) is not None
        ]
        if p.deliverable and p.layer is None:
            found.append(f"{p.id}: deliverable {p.deliverable!r} needs a 'layer'")
        elif p.deliverable and p.deliverable not in (names := deliverable_names(p.layer)):
            found.append(
                f"{p.id}: layer {p.layer} has no deliverable {p.deliverable!r}; "
                f"it has {', '.join(names) or 'none'}"
            )
    return found


def table(papers: list[Paper]) -> str:
    """One line per paper: id, status, layer, title, link."""
    if not papers:
        return "(none)"
    width = max(len(p.id) for p in papers)
    return "\n".join(
        f"{p.id:<{width}}  {p.status:<11}  L{p.layer if p.layer is not None else '-'}  "
        f"{p.title}  {p.link}"
        for p in papers
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layer8_meta papers", description=__doc__)
    p.add_argument("--file", type=Path, default=REPO_ROOT / "papers.yaml", help="papers.yaml")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("list", help="every paper")
    sub.add_parser("queue", help="the papers queued or being read")
    m = sub.add_parser("mark", help="set a paper's status")
    m.add_argument("paper", help="its id, or its title (or a unique part of it)")
    m.add_argument("status", help=f"one of {', '.join(STATUSES)}")
    sub.add_parser("check", help="exit 1 if an implemented paper points at missing code")
    return p


def _run(args: argparse.Namespace) -> int:
    if args.command == "mark":
        paper = mark(args.file, args.paper, args.status)
        print(f"{paper.id}: status {paper.status} (wrote {args.file})")
        return 0
    papers = load_papers(args.file)
    if args.command == "queue":
        queue = [p for p in papers if p.status == "reading"]
        queue += [p for p in papers if p.status == "queued"]
        print(table(queue))
        return 0
    if args.command == "check":
        found = problems(papers)
        done = sum(p.status in DONE for p in papers)
        print("\n".join(found) or f"ok: all {done} implemented/reproduced papers point at code")
        return 1 if found else 0
    print(table(papers))
    counts = ", ".join(f"{sum(p.status == s for p in papers)} {s}" for s in STATUSES)
    print(f"{len(papers)} papers in {args.file}: {counts}")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except PaperError as exc:
        print(f"error: {exc}")
        return 2
