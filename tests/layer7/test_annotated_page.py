"""The annotated grokking page cannot rot: every code block it quotes names its source file and
appears there verbatim, and every figure it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "layer7" / "grokking.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def quoted_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, named source file, code) of each fenced block of the page."""
    return [(m[1], m[2].strip(), m[3]) for m in FENCE.finditer(text)]


def test_the_page_quotes_code():
    python = [b for b in quoted_blocks(PAGE.read_text()) if b[0] == "python"]
    assert len(python) >= 10, "the page should show the code beside the equations"


@pytest.mark.parametrize(
    ("lang", "source", "code"),
    [b for b in quoted_blocks(PAGE.read_text()) if b[0] == "python"],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else "",
)
def test_each_quoted_block_appears_verbatim_in_the_file_it_names(lang, source, code):
    assert source, f"a python block names no source file:\n{code}"
    path = REPO_ROOT / source
    assert path.is_file(), f"the page quotes {source}, which does not exist"
    assert code in path.read_text(), f"the block quoted from {source} is not in it:\n{code}"


def test_the_checker_catches_an_edited_quote(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("x = 1\ny = 2\n")
    page = f"```python {source}\nx = 1\ny = 3\n```\n"
    ((_, named, code),) = quoted_blocks(page)
    assert Path(named) == source and code not in source.read_text()


def test_every_figure_on_the_page_exists():
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", PAGE.read_text())
    assert figures, "the results should show the plots"
    for fig in figures:
        assert (PAGE.parent / fig).is_file(), fig
