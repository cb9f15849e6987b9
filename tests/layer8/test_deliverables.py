"""Layer 8's deliverables end to end on a synthetic runs folder: what ``make layer8`` records.

Each runs through layer 0's ``run_deliverable`` (the same path as ``python -m layer8_meta``)
into ``tmp_path``; the expectations are counted by hand from the runs planted here.
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

import pytest

from layer0_math.lab import open_run, read_manifest, run_deliverable
from layer8_meta import deliverables, reflect
from layer8_meta.docs_site import DocsResult

# the module, not the function the package re-exports under the same name
docs_module = importlib.import_module("layer8_meta.deliverables.docs")


def _plant(runs: Path) -> None:
    """Two ok runs of one layer-1 deliverable and one failed layer-4 run."""
    for acc in (0.90, 0.95):
        with open_run("layer1_autograd", "scalar_engine", preset="quick", seed=0, config={},
                      runs_dir=runs) as ctx:  # fmt: skip
            ctx.record_metrics({"accuracy": acc})
    with pytest.raises(RuntimeError):
        with open_run("layer4_architectures", "gpt_tinystories", preset="quick", seed=0,
                      config={}, runs_dir=runs):  # fmt: skip
            raise RuntimeError("planted failure")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _plant(root)
    return root


def test_run_registry_counts_runs_and_names_the_layers_without_any(runs, capsys):
    metrics = run_deliverable(deliverables.run_registry, runs_dir=runs)
    # 3 planted runs + this deliverable's own (recorded "running" while it indexes)
    assert metrics["runs_indexed"] == 4
    assert metrics["runs_per_layer"] == {
        "layer1_autograd": 2, "layer4_architectures": 1, "layer8_meta": 1,
    }  # fmt: skip
    assert "layer0_math" in metrics["missing_layers"]
    assert "layer1_autograd" not in metrics["missing_layers"]
    assert "make layer0" in capsys.readouterr().out
    table = next((runs / "layer8_meta" / "run_registry").glob("2*/table.md")).read_text()
    assert "| layer4_architectures | 1 | 1 |" in table  # the failed run is "not ok"


def test_reflection_writes_the_week_and_keeps_the_learners_notes(runs, tmp_path):
    journal = tmp_path / "journal"
    overrides = {"journal": str(journal)}
    run_deliverable(deliverables.reflection, runs_dir=runs, overrides=overrides)
    entry = journal / f"{reflect.iso_week(dt.date.today()).name}.md"
    mine = "I finally understood why tanh saturates.\n"
    entry.write_text(entry.read_text().replace(reflect.PLACEHOLDER, mine))
    metrics = run_deliverable(deliverables.reflection, runs_dir=runs, overrides=overrides)
    assert mine in entry.read_text()
    assert metrics["broke"] >= 1  # the planted gpt_tinystories failure
    assert "planted failure" in entry.read_text()


def test_notes_graph_renders_and_checks_the_seeded_notes(tmp_path):
    metrics = run_deliverable(deliverables.notes_graph, runs_dir=tmp_path)
    out = next((tmp_path / "layer8_meta" / "notes_graph").glob("2*"))
    notes = [p for p in (Path(__file__).parents[2] / "notes").glob("*.md") if p.name != "README.md"]
    assert metrics["notes"] == len(notes)
    assert (out / "notes.png").stat().st_size > 10_000
    page = (out / "notes.html").read_text()
    assert "<svg" in page or "<canvas" in page


def test_docs_fails_its_run_on_a_broken_link(tmp_path, monkeypatch):
    broken = DocsResult(tmp_path / "site", pages=3, broken_links=["index.html -> nope.html"],
                        seconds=0.1)  # fmt: skip
    monkeypatch.setattr(docs_module, "build_docs", lambda *a, **k: broken)
    with pytest.raises(RuntimeError, match="nope.html"):
        run_deliverable(deliverables.docs, runs_dir=tmp_path)
    run = next((tmp_path / "layer8_meta" / "docs").glob("2*"))
    assert read_manifest(run)["status"] == "failed"
    assert (run / "broken_links.txt").read_text() == "index.html -> nope.html\n"


@pytest.mark.slow  # the code catalog imports every layer's deliverables (torch, onnx, faiss...)
def test_report_shows_every_planted_deliverable_with_its_status(runs):
    metrics = run_deliverable(deliverables.report, runs_dir=runs)
    page = (runs / "report" / "report.html").read_text()
    assert metrics["report"] == str(runs / "report" / "report.html")
    assert "planted failure" in page  # the failed run's error line
    assert "scalar_engine" in page and "gpt_tinystories" in page
    assert metrics["layers_without_runs"] >= 1  # layer 0 has no run here
