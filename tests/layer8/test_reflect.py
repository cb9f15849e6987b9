"""The weekly entry against runs planted across two weeks (and one the week after), whose
improvement, failures and seconds per layer are known, and the learner's text kept on rewrite.

Week 2026-W45 is Monday 2026-11-02 to Sunday 2026-11-08."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from layer0_math.lab import open_run, read_manifest, write_json
from layer8_meta import reflect
from layer8_meta.reflect import END, START
from layer8_meta.registry import RunRow
from layer8_meta.report.targets import Target

WEEK = reflect.iso_week(dt.date(2026, 11, 4))
LAYERS = [
    "layer0_math",
    "layer1_autograd",
    "layer2_primitives",
    "layer3_framework",
    "layer4_architectures",
    "layer5_training",
]


def row(run_id: str, layer: str, name: str, start: str, **kw: Any) -> RunRow:
    fields: dict[str, Any] = dict(
        parent_id=None, kind="deliverable", preset="quick", seed=0, config={}, config_hash=None,
        commit=None, dirty=False, status="ok", error=None, seconds=0.0, rss_mib=None,
        cuda_mib=None, device="cpu", host={}, path=Path("/nowhere"), metrics={},
    )  # fmt: skip
    fields.update(kw)
    return RunRow(run_id=run_id, layer=layer, deliverable=name, start=start, **fields)


GPT = ("layer4_architectures", "gpt")
ROWS = [
    row("prevgpt1", *GPT, "2026-10-28T10:00:00", seconds=600,
        metrics={"val_bpb": 2.0, "accuracy": 0.9}),
    row("prevrnn1", "layer2_primitives", "char_rnn", "2026-10-29T09:00:00", seconds=100,
        metrics={"loss": 1.0}),
    row("thisgpt1", *GPT, "2026-11-03T10:00:00", seconds=1800,
        metrics={"val_bpb": 1.5, "accuracy": 0.8}),
    row("subrun01", "layer3_framework", "train", "2026-11-03T10:05:00", seconds=1000,
        parent_id="thisgpt1", kind="train"),
    row("thisrnn1", "layer2_primitives", "char_rnn", "2026-11-04T12:00:00", seconds=1800,
        status="failed", error="RuntimeError: boom\n  at line 3"),
    row("thisgdq1", "layer0_math", "gd_quadratic", "2026-11-05T08:00:00", seconds=360,
        status="interrupted", error="KeyboardInterrupt: SIGTERM"),
    row("nextgpt1", *GPT, "2026-11-10T10:00:00", seconds=9999, metrics={"val_bpb": 0.1}),
]  # fmt: skip
G, R = "issue 12", "issue 5"
TARGETS = [
    Target("layer4_architectures", "gpt", "val_bpb", 1.2, "<=", G),
    Target("layer4_architectures", "gpt", "accuracy", 0.5, ">=", G),  # met: no line
    Target("layer4_architectures", "gpt", "seconds", 600, "<=", G, preset="quick"),
    Target("layer4_architectures", "gpt", "accuracy", 0.99, ">=", G, preset="full"),  # n/a
    Target("layer4_architectures", "gpt", "fid", 10, "<=", G),
    Target("layer2_primitives", "char_rnn", "loss", 0.5, "<=", R),
    Target("layer1_autograd", "scalar_engine", "loss", 0.1, "<=", "issue 4"),  # layer: no runs
    Target("layer0_math", "gd_quadratic", "final_error", 1e-6, "<=", "issue 3"),
]
BUDGETS = {"layer4_architectures": 1.0, "layer3_framework": 0.5}


def headlines(layer: str, name: str) -> tuple[str, ...]:
    return ("val_bpb", "accuracy") if (layer, name) == GPT else ()


def entry(notes: str = reflect.PLACEHOLDER) -> str:
    return reflect.render(
        ROWS, WEEK, headlines=headlines, targets=TARGETS, budgets=BUDGETS, layers=LAYERS,
        notes=notes,
    )  # fmt: skip


def section(text: str, title: str) -> list[str]:
    body = text.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0]
    return body.splitlines()


def test_week_bounds() -> None:
    assert WEEK.name == "2026-W45"
    assert (WEEK.start, WEEK.end) == (dt.datetime(2026, 11, 2), dt.datetime(2026, 11, 9))
    assert reflect.iso_week(dt.date(2027, 1, 1)).name == "2026-W53"  # ISO, not calendar, year


def test_header_counts_only_this_weeks_runs() -> None:
    text = entry()
    assert text.startswith("# Week 2026-W45 (2026-11-02 to 2026-11-08)\n")
    assert "4 runs this week (1 failed, 1 interrupted, 2 ok; 3 top-level)" in text


def test_improved_is_the_headline_that_moved_the_right_way() -> None:
    assert section(entry(), "What improved") == [
        "- layer4_architectures/gpt: val_bpb 2 -> 1.5 (run thisgpt1)"
    ]


def test_broke_lists_failures_regressions_and_worse_metrics() -> None:
    assert section(entry(), "What broke") == [
        "- failed: layer2_primitives/char_rnn run thisrnn1 (2026-11-04 12:00): RuntimeError: boom",
        "- interrupted: layer0_math/gd_quadratic run thisgdq1 (2026-11-05 08:00): "
        "KeyboardInterrupt: SIGTERM",
        "- regression: layer2_primitives/char_rnn: the latest run failed; the last ok run was "
        "prevrnn1 (2026-10-29)",
        "- got worse: layer4_architectures/gpt: accuracy 0.9 -> 0.8 (run thisgpt1)",
    ]


def test_next_is_missed_targets_and_layers_without_runs() -> None:
    assert section(entry(), "What is next") == [
        "- target missed: layer4_architectures/gpt: val_bpb = 1.5, goal <= 1.2 (issue 12)",
        "- target missed: layer4_architectures/gpt: seconds = 1800, goal <= 600 "
        "(issue 12, quick preset)",
        "- not measured: layer4_architectures/gpt run thisgpt1 records no fid "
        "(goal <= 10 (issue 12))",
        "- target missed: layer2_primitives/char_rnn: loss = 1, goal <= 0.5 (issue 5)",
        "- not measured yet: layer0_math/gd_quadratic: no ok run for 1 target(s), "
        "e.g. final_error <= 1e-06 (issue 3)",
        "- no runs yet: layer1_autograd (make layer1)",
        "- no runs yet: layer5_training (make layer5)",
    ]


def test_time_per_layer_against_budgets() -> None:
    # 1800 s = 0.5 h; the sub-run's 1000 s are inside its parent's; next week's run is out
    assert section(entry(), "Time per layer")[2:] == [
        "| layer0_math | 1 | 0.10 | - | - |",
        "| layer2_primitives | 1 | 0.50 | - | - |",
        "| layer3_framework | 0 | 0.00 | 0.5 | under by 0.50 h |",
        "| layer4_architectures | 1 | 0.50 | 1 | under by 0.50 h |",
        "| total | 3 | 1.10 | 1.5 | under by 0.40 h |",
    ]


def test_target_direction_overrides_the_name() -> None:
    up, down = (Target("layer4_architectures", "x", "fid_gap", 0, d, "s") for d in (">=", "<="))
    assert reflect.better("fid_gap", 2.0, 1.0, []) is False  # fid: lower is better
    assert reflect.better("fid_gap", 2.0, 1.0, [up]) is True
    assert reflect.better("fid_gap", 2.0, 1.0, [up, down]) is False  # a range: from the name
    assert reflect.better("accuracy", 0.5, 0.5, []) is None


def test_budgets_resolve_layer_numbers_and_reject_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("4: 2.5\nlayer0_math: 1\n")
    assert reflect.load_budgets(path, LAYERS) == {"layer4_architectures": 2.5, "layer0_math": 1.0}
    path.write_text("9: 1\n")
    with pytest.raises(ValueError, match="budget 9"):
        reflect.load_budgets(path, LAYERS)


def plant_run(runs: Path, start: str, metrics: dict[str, float]) -> None:
    with open_run("experiments", "probe", preset="quick", seed=0, config={}, runs_dir=runs) as ctx:
        ctx.record_metrics(metrics)
    manifest = read_manifest(ctx.out_dir)
    write_json(ctx.out_dir / "manifest.json", {**manifest, "start": start, "seconds": 7200.0})


def test_cli_from_the_registry_keeps_the_learners_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, journal = tmp_path / "runs", tmp_path / "journal"
    plant_run(runs, "2026-10-27T09:00:00", {"val_loss": 3.0})
    plant_run(runs, "2026-11-06T09:00:00", {"val_loss": 2.5})
    journal.mkdir()
    (journal / "budgets.yaml").write_text("experiments: 1\n")
    argv = ["--week", "--date", "2026-11-04", "--journal", str(journal), "--runs-dir", str(runs)]
    argv += ["--targets", str(tmp_path / "none.yaml")]
    assert reflect.main(argv) == 0
    path = journal / "2026-W45.md"
    assert capsys.readouterr().out == f"wrote {path}\n"
    text = path.read_text(encoding="utf-8")
    assert "- experiments/probe: val_loss 3 -> 2.5 (run " in text
    assert "| experiments | 1 | 2.00 | 1 | over by 1.00 h |" in text

    mine = "\r\nWhat I learned ✓: warmup matters.\r\n\r\n  indented, trailing space \n"
    old_notes = text[text.index(START) + len(START) : text.index(END)]
    edited = text.replace(old_notes, mine).replace("## What improved", "## EDITED")
    path.write_bytes(edited.encode("utf-8"))
    assert reflect.main(argv) == 0
    again = path.read_bytes().decode("utf-8")
    assert again[again.index(START) + len(START) : again.index(END)] == mine
    assert "## What improved" in again and "## EDITED" not in again

    path.write_text("my own journal, no markers\n", encoding="utf-8")
    assert reflect.main(argv) == 2
    assert "lost its markers" in capsys.readouterr().out.splitlines()[-1]
    assert path.read_text(encoding="utf-8") == "my own journal, no markers\n"
