"""``reflection``: this week's entry of the reflection log, ``journal/YYYY-Www.md``.

:mod:`layer8_meta.reflect` writes what improved, what broke, what is next and the time spent per
layer from the registry; the learner's own section of an existing entry is kept byte for byte.
Artifacts: ``entry.md`` (a copy of the entry as written by this run).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from layer0_math.lab import REPO_ROOT, RunContext, deliverable
from layer8_meta import reflect
from layer8_meta.deliverables.common import runs_dir_of


@deliverable(quick={"journal": "journal"}, full={}, headline=["improved", "broke", "next"])
def reflection(ctx: RunContext) -> dict[str, Any]:
    """Write (or refresh) this week's journal entry; count its items per section."""
    journal = REPO_ROOT / ctx.config["journal"]
    argv = ["--week", "--journal", str(journal), "--runs-dir", str(runs_dir_of(ctx))]
    if reflect.main(argv) != 0:
        raise RuntimeError("reflect --week failed (its error is printed above)")
    path = journal / f"{reflect.iso_week(dt.date.today()).name}.md"
    text = path.read_text(encoding="utf-8")
    ctx.write_text("entry.md", text)
    counts = _items_per_section(text)
    return {
        "entry": str(path),
        "improved": counts.get("what improved", 0),
        "broke": counts.get("what broke", 0),
        "next": counts.get("what is next", 0),
    }


def _items_per_section(text: str) -> dict[str, int]:
    """Bullet items under each ``## `` heading of the entry, by lower-cased heading."""
    counts: dict[str, int] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip().lower()
            counts[heading] = 0
        elif heading and line.startswith("- "):
            counts[heading] += 1
    return counts
