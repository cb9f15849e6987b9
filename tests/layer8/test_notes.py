"""The notes graph against a small folder whose graph is known by hand, and the real notes/.

The tmp graph (arrows point at prerequisites)::

    base (0) <- mid (1) <- top (2) -> base (as [[Base concept|alias]])
    loop-a (0) <-> loop-b (0)        a cycle: chain must still end,
    into-loop (0) -> loop-a          also from outside the cycle
    upward (1) -> top (2)            a prerequisite at a higher layer
    broken (2) -> [[no-such-note]]   dangling; code: a missing file and a missing symbol
    alone (3)                        orphan: no links in or out
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT
from layer8_meta.notes import cli
from layer8_meta.notes.graph import build, chain, problems, render_html
from layer8_meta.notes.parse import NoteError, code_problem, load_notes
from tests.chromium import ARGS, CHROMIUM, browser_test

NOTES = {
    "base": (0, ["layer0_math/numerics.py::softmax"], "The base."),
    "mid": (1, ["layer0_math/numerics.py"], "Uses [[base]]."),
    "top": (2, [], "Uses [[Mid]] and [[Base concept|the base]]."),
    "loop-a": (0, [], "Needs [[loop-b]]."),
    "loop-b": (0, [], "Needs [[loop_a]]."),
    "into-loop": (0, [], "Needs [[loop-a]]."),
    "upward": (1, [], "Builds on [[top]]."),
    "broken": (
        2,
        ["layer0_math/nope.py", "layer0_math/numerics.py::not_a_function"],
        "See [[no-such-note]] and [[base]].",
    ),
    "alone": (3, [], "Nothing."),
}
TITLES = {"base": "Base concept"}


def write_note(folder: Path, name: str, layer: int, code: list[str], body: str) -> None:
    title = TITLES.get(name, name.title())
    code_yaml = "".join(f"\n  - {c}" for c in code) or " []"
    text = f"---\ntitle: {title}\nlayer: {layer}\ntags: [t]\ncode:{code_yaml}\n---\n{body}\n"
    (folder / f"{name}.md").write_text(text, encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, (layer, code, body) in NOTES.items():
        write_note(notes, name, layer, code, body)
    (notes / "README.md").write_text("not a note [[ignored]]\n")
    return notes


def test_edges_are_the_links_resolved_by_name_and_title(folder: Path) -> None:
    edges = set(build(load_notes(folder)).edges)
    assert edges == {
        ("mid", "base"),
        ("top", "mid"),
        ("top", "base"),
        ("loop-a", "loop-b"),
        ("loop-b", "loop-a"),
        ("into-loop", "loop-a"),
        ("upward", "top"),
        ("broken", "base"),
    }


def test_problems_name_each_planted_fault(folder: Path) -> None:
    found = problems(load_notes(folder), REPO_ROOT)
    assert found.dangling == [("broken", "no-such-note")]
    assert found.orphans == ["alone"]
    assert found.upward == [("upward", "top")]
    assert [(n, ref) for n, ref, _ in found.missing_code] == [
        ("broken", "layer0_math/nope.py"),
        ("broken", "layer0_math/numerics.py::not_a_function"),
    ]
    assert [sorted(c) for c in found.cycles] == [["loop-a", "loop-b"]]
    assert found.failing


def test_chain_is_the_closure_ordered_by_layer(folder: Path) -> None:
    notes = load_notes(folder)
    assert [n.name for n in chain(notes, "top")] == ["base", "mid"]
    assert [n.name for n in chain(notes, "upward")] == ["base", "mid", "top"]
    assert [n.name for n in chain(notes, "loop-a")] == ["loop-b"]  # the cycle ends
    found: list = []
    walk = threading.Thread(target=lambda: found.append(chain(notes, "into-loop")), daemon=True)
    walk.start()
    walk.join(timeout=5)
    assert not walk.is_alive(), "chain did not end on a cycle"
    assert [n.name for n in found[0]] == ["loop-a", "loop-b"]
    assert chain(notes, "base") == []
    with pytest.raises(ValueError, match="unknown note 'nobody'"):
        chain(notes, "nobody")


def test_check_fails_on_the_faults_and_passes_once_fixed(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--notes", str(folder), "check"]) == 1
    out = capsys.readouterr().out
    assert "dangling link: broken -> [[no-such-note]]" in out
    assert "missing code: broken: layer0_math/nope.py: 'layer0_math/nope.py' does not exist" in out
    assert "'not_a_function' is not defined in layer0_math/numerics.py" in out
    assert "upward prerequisite: upward builds on top" in out
    assert "orphan: alone" in out
    (folder / "broken.md").unlink()
    (folder / "upward.md").unlink()
    assert cli.main(["--notes", str(folder), "check"]) == 0


def test_chain_command_names_the_layers(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--notes", str(folder), "chain", "upward"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "layer 0: base (Base concept)",
        "layer 1: mid (Mid)",
        "layer 2: top (Top)",
        "3 prerequisites over layers 0, 1, 2",
    ]


@pytest.mark.slow  # matplotlib and the layout: ~5 s here
def test_graph_writes_png_and_self_contained_html(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli.main(["--notes", str(folder), "graph", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'notes.png'}" in printed and "orphan: alone" in printed
    assert (out / "notes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "notes.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)  # nothing fetched
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1).replace("<\\/", "</"))
    assert {tuple(e) for e in data["edges"]} == set(build(load_notes(folder)).edges)
    assert {n["id"] for n in data["nodes"]} == set(NOTES)


def test_bad_note_is_one_error_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_note(folder, "bad", 9, [], "x")
    with pytest.raises(NoteError, match=r"bad\.md: 'layer' must be an integer 0-8, got 9"):
        load_notes(folder)
    assert cli.main(["--notes", str(folder), "check"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and out.count("\n") == 1


def test_code_problem_checks_the_symbol() -> None:
    assert code_problem("layer0_math/numerics.py::logsumexp", REPO_ROOT) is None
    assert code_problem("layer1_autograd/value.py::Value", REPO_ROOT) is None
    assert code_problem("layer1_autograd/value.py::Valu", REPO_ROOT) is not None
    assert code_problem("layer0_math", REPO_ROOT) is None
    assert "folder" in code_problem("layer0_math::x", REPO_ROOT)


def test_the_real_notes_pass_check() -> None:
    notes = load_notes(REPO_ROOT / "notes")
    found = problems(notes, REPO_ROOT)
    assert (found.dangling, found.missing_code, found.upward) == ([], [], [])
    assert 40 <= len(notes) <= 80
    assert {n.layer for n in notes.values()} == set(range(9))
    assert all(n.code for n in notes.values()), "every concept note names its code"


@browser_test
def test_clicking_a_note_highlights_its_chain_in_a_browser(folder: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    page_path = render_html(load_notes(folder), tmp_path / "notes.html")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.click('circle[data-id="top"]')
            info = page.text_content("#info")
            dim = page.eval_on_selector_all("circle.dim", "cs => cs.map(c => c.dataset.id)")
            page.screenshot(path=str(tmp_path / "notes.png"))
        finally:
            browser.close()
    assert errors == []
    assert "prerequisite chain (2), layers 0, 1" in info
    assert "layer 0: Base concept" in info and "layer 1: Mid" in info
    assert sorted(dim) == sorted(set(NOTES) - {"top", "mid", "base"})
