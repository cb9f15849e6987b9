"""One note per concept: a markdown file with YAML front matter and ``[[wikilinks]]``.

A note in ``notes/`` looks like::

    ---
    title: Scaled dot-product attention
    layer: 2
    tags: [attention, sequence]
    code: [layer2_primitives/attention.py::scaled_dot_product_attention]
    ---
    softmax(QKᵀ/√d)·V ... builds on [[softmax]] and [[linear-algebra|matrix products]].

Its *name* is the file's stem (``attention.md`` -> ``attention``); a link names another note by
its stem (``[[softmax]]``) or by its title (``[[Softmax]]``), case and spaces not counting, and
may show other text after a bar (``[[other|alias]]``). A link is a *prerequisite*: the concept
this one builds on. A ``code:`` entry is a repository-relative file, optionally
``path::symbol``; :func:`code_problem` says whether it exists and defines the symbol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
WIKILINK = re.compile(r"\[\[([^\]|]+)(?:\|([^\]]*))?\]\]")
LAYERS = range(9)


class NoteError(ValueError):
    """A note that cannot be read: its file and what is wrong with it."""


@dataclass(frozen=True)
class Note:
    name: str  # the file's stem
    title: str
    layer: int
    tags: tuple[str, ...]
    code: tuple[str, ...]
    links: tuple[str, ...]  # link targets as written, keyed by :func:`key`
    body: str
    path: Path


def key(text: str) -> str:
    """The form a link and a note name are compared in: lower case, spaces and _ as -."""
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def links_in(body: str) -> tuple[str, ...]:
    """The distinct link targets of ``body``, keyed, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in WIKILINK.finditer(body):
        seen.setdefault(key(m.group(1)), None)
    return tuple(seen)


def _list_field(meta: dict[str, Any], field: str, path: Path) -> tuple[str, ...]:
    value = meta.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NoteError(f"{path}: {field!r} must be a list of strings, got {value!r}")
    return tuple(value)


def parse_note(path: Path) -> Note:
    """Read one note; NoteError naming the file and the field when it is malformed."""
    text = path.read_text(encoding="utf-8")
    m = FRONT.match(text)
    if m is None:
        raise NoteError(f"{path}: no YAML front matter (expected a first line '---')")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        raise NoteError(f"{path}: front matter is not YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise NoteError(f"{path}: front matter must be a mapping, got {meta!r}")
    title, layer = meta.get("title"), meta.get("layer")
    if not isinstance(title, str) or not title.strip():
        raise NoteError(f"{path}: 'title' must be a non-empty string, got {title!r}")
    if not isinstance(layer, int) or isinstance(layer, bool) or layer not in LAYERS:
        raise NoteError(f"{path}: 'layer' must be an integer 0-8, got {layer!r}")
    body = text[m.end() :]
    return Note(
        name=path.stem,
        title=title.strip(),
        layer=layer,
        tags=_list_field(meta, "tags", path),
        code=_list_field(meta, "code", path),
        links=links_in(body),
        body=body,
        path=path,
    )


def load_notes(folder: Path) -> dict[str, Note]:
    """Every note in ``folder`` (its ``*.md`` but ``README.md``), by name, sorted."""
    if not folder.is_dir():
        raise NoteError(f"notes folder {folder} does not exist (expected a folder of *.md notes)")
    paths = sorted(p for p in folder.glob("*.md") if p.name != "README.md")
    return {p.stem: parse_note(p) for p in paths}


def _defines(source: str, symbol: str) -> bool:
    """Whether ``source`` defines ``symbol`` (def, class or assignment; ``A.b``: both parts)."""
    for part in symbol.split("."):
        name = re.escape(part)
        pattern = rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^\s*{name}\s*(?::[^=\n]*)?="
        if re.search(pattern, source, re.MULTILINE) is None:
            return False
    return True


def code_problem(ref: str, repo_root: Path) -> str | None:
    """None if ``ref`` (``path`` or ``path::symbol``) exists; else what is missing."""
    path, _, symbol = ref.partition("::")
    file = repo_root / path
    if not path or not file.exists():
        return f"{path!r} does not exist"
    if symbol:
        if not file.is_file():
            return f"{path!r} is a folder; a symbol needs a file"
        if not _defines(file.read_text(encoding="utf-8", errors="replace"), symbol):
            return f"{symbol!r} is not defined in {path}"
    return None
