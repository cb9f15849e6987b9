"""papers.yaml: the real file passes check; planted faults fail naming themselves; mark edits one
line and round-trips byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT
from layer8_meta import papers

YAML = """\
# my reading list (this comment must survive a mark)
papers:
  - id: ok-paper
    title: "Attention Is All You Need"
    link: https://arxiv.org/abs/1706.03762
    status: implemented   # done in layer 2
    tags: [sequence]
    layer: 0
    deliverable: gd_quadratic
    code: [layer2_primitives/attention.py::scaled_dot_product_attention]
  - id: missing-path
    title: "A Paper With Lost Code"
    link: https://arxiv.org/abs/0000.00000
    status: reproduced
    code: [layer0_math/does_not_exist.py]
  - id: missing-deliverable
    title: "A Paper With A Lost Deliverable"
    link: https://arxiv.org/abs/0000.00001
    status: implemented
    layer: 0
    deliverable: no_such_run
  - id: later
    title: "Attention Is Not All You Need Later"
    link: https://arxiv.org/abs/0000.00002
    status: queued
    code: [not/checked/while/queued.py]
"""


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "papers.yaml"
    path.write_text(YAML, encoding="utf-8")
    return path


def test_check_names_each_missing_target(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert papers.main(["--file", str(file), "check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "missing-path: code layer0_math/does_not_exist.py: "
        "'layer0_math/does_not_exist.py' does not exist",
        "missing-deliverable: layer 0 has no deliverable 'no_such_run'; it has "
        "gd_quadratic, linear_regression, variance_propagation",
    ]


def test_mark_rewrites_only_the_status_line_and_round_trips(file: Path) -> None:
    assert papers.main(["--file", str(file), "mark", "missing-path", "reading"]) == 0
    expected = YAML.replace("status: reproduced", "status: reading")
    assert file.read_text(encoding="utf-8") == expected
    assert papers.find(papers.load_papers(file), "missing-path").status == "reading"
    # by a unique part of the title, keeping the trailing comment of that line
    papers.mark(file, "is all you need", "queued")
    assert "status: queued   # done in layer 2" in file.read_text(encoding="utf-8")
    papers.mark(file, "Attention Is All You Need", "implemented")
    papers.mark(file, "missing-path", "reproduced")
    assert file.read_text(encoding="utf-8") == YAML


def test_bad_status_and_unknown_paper_are_one_line_errors(
    file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert papers.main(["--file", str(file), "mark", "later", "done"]) == 2
    out = capsys.readouterr().out
    assert out == (
        "error: unknown status 'done'; expected one of queued, reading, implemented, reproduced\n"
    )
    assert papers.main(["--file", str(file), "mark", "nobody", "queued"]) == 2
    assert "no paper 'nobody'" in capsys.readouterr().out
    with pytest.raises(papers.PaperError, match="matches 2 papers"):
        papers.find(papers.load_papers(file), "attention")
    assert file.read_text(encoding="utf-8") == YAML


def test_queue_lists_reading_then_queued(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    papers.mark(file, "ok-paper", "queued")
    papers.mark(file, "missing-path", "reading")
    assert papers.main(["--file", str(file), "queue"]) == 0
    ids = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["missing-path", "ok-paper", "later"]


def test_malformed_entry_names_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "papers.yaml"
    bad.write_text("papers:\n  - id: x\n    title: T\n    link: arxiv\n    status: queued\n")
    with pytest.raises(papers.PaperError, match="paper 1: 'link' must be a URL, got 'arxiv'"):
        papers.load_papers(bad)


@pytest.mark.slow  # imports every layer's deliverables (torch, the models)
def test_the_real_papers_yaml_passes_check() -> None:
    real = papers.load_papers(REPO_ROOT / "papers.yaml")
    assert papers.problems(real) == []
    done = [p for p in real if p.status in papers.DONE]
    assert len(done) >= 30 and all(p.link.startswith("https://arxiv.org/abs/") for p in real)
    assert {p.status for p in real} >= {"queued", "reading", "implemented", "reproduced"}
