"""The run registry: indexing (incremental, never fatal, one transaction), queries, the CLI.

Runs are real run records (``open_run`` into ``tmp_path``) or, for the scale test, manifests
written with json; answers are checked against hand-made expectations and against the
database read directly with sqlite3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from layer0_math.lab import open_run, read_manifest, write_json
from layer8_meta.registry import ABSENT, Registry, infer_mode
from layer8_meta.registry import cli as registry_cli
from layer8_meta.registry.db import Indexer


def make_run(
    runs: Path,
    layer: str,
    name: str,
    metrics: dict,
    *,
    config: dict | None = None,
    start: str | None = None,
    fail: bool = False,
    kind: str = "deliverable",
) -> Path:
    """A real run record; ``start`` rewrites the manifest's start time afterwards."""
    try:
        with open_run(
            layer, name, preset="quick", seed=0, config=config or {}, runs_dir=runs, kind=kind
        ) as ctx:
            ctx.record_metrics(metrics)
            if fail:
                raise RuntimeError("planned failure")
    except RuntimeError:
        pass
    if start is not None:
        man = read_manifest(ctx.out_dir)
        write_json(ctx.out_dir / "manifest.json", {**man, "start": start})
    return ctx.out_dir


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four runs, made once (a run record costs git calls); each test gets a copy."""
    root = tmp_path_factory.mktemp("template") / "runs"
    make_run(
        root,
        "layer4_architectures",
        "gpt",
        {"val_loss": 3.0, "acc": 0.5},
        config={"lr": 0.1, "optim": {"beta": 0.9}},
        start="2026-01-01T10:00:00",
    )
    make_run(
        root,
        "layer4_architectures",
        "gpt",
        {"val_loss": 2.5, "acc": 0.4},
        config={"lr": 0.2, "optim": {"beta": 0.9, "eps": 1e-8}},
        start="2026-01-02T10:00:00",
    )
    make_run(
        root,
        "layer4_architectures",
        "bert",
        {"val_loss": 9.0},
        start="2026-01-03T10:00:00",
        fail=True,
    )
    make_run(
        root,
        "layer0_math",
        "gd",
        {"val_loss": 1.0, "note": "text", "flag": True},
        start="2026-01-04T10:00:00",
    )
    return root


@pytest.fixture
def runs(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "runs", symlinks=True))


def open_indexed(runs: Path) -> tuple[Registry, object]:
    reg = Registry.open(runs)
    return reg, reg.index()


def test_index_reads_every_run_once(runs: Path) -> None:
    reg, report = open_indexed(runs)
    assert (report.added, report.skipped) == (4, [])
    # the ``latest`` links are not entered: 4 runs, not 4 + 2
    assert sum(1 for _ in runs.rglob("latest")) == 2  # gpt, gd (bert failed)
    db = sqlite3.connect(runs / "registry.sqlite")
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
    gd = db.execute("SELECT run_id FROM runs WHERE deliverable = 'gd'").fetchone()[0]
    names = {r[0] for r in db.execute("SELECT name FROM metrics WHERE run_id = ?", (gd,))}
    assert names == {"val_loss"}  # text and bool metrics are not numeric scalars


def test_runs_filters_newest_first(runs: Path) -> None:
    reg, _ = open_indexed(runs)
    assert [r.deliverable for r in reg.runs()] == ["gd", "bert", "gpt", "gpt"]
    assert [r.start[:10] for r in reg.runs(layer="4")] == ["2026-01-03", "2026-01-02", "2026-01-01"]
    assert reg.runs(layer="layer4") == reg.runs(layer="layer4_architectures")
    assert [r.deliverable for r in reg.runs(status="failed")] == ["bert"]
    assert reg.runs(status="failed")[0].error == "RuntimeError: planned failure"
    assert [r.deliverable for r in reg.runs(since=dt.datetime(2026, 1, 3))] == ["gd", "bert"]
    assert len(reg.runs(since="2026-01-02")) == 3
    assert len(reg.runs(limit=2)) == 2
    assert reg.runs(kind="train") == []
    row = reg.runs(deliverable="gpt", limit=1)[0]
    man = read_manifest(row.path)
    assert (row.run_id, row.config, row.commit) == (
        man["run_id"],
        man["config"],
        man["git"]["commit"],
    )
    assert row.metrics == {"val_loss": 2.5, "acc": 0.4}


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"status": "done"}, "'done'"),
        ({"since": "3x"}, "'3x'"),
        ({"limit": 0}, "0"),
        ({"layer": "Layer 4!"}, "'Layer 4!'"),
    ],
)
def test_bad_filters_name_the_value(runs: Path, kwargs: dict, bad: str) -> None:
    reg, _ = open_indexed(runs)
    with pytest.raises(ValueError, match="expected") as info:
        reg.runs(**kwargs)
    assert bad in str(info.value)


def test_get_by_prefix_and_folder(runs: Path) -> None:
    for i, run in enumerate(sorted((runs / "layer4_architectures" / "gpt").glob("2*"))):
        write_json(run / "manifest.json", {**read_manifest(run), "run_id": f"abc{i}"})
    reg, _ = open_indexed(runs)
    assert reg.get("abc1").run_id == "abc1"
    folder = runs / "layer0_math" / "gd" / "latest"
    gd = read_manifest(folder)["run_id"]
    assert reg.get(gd[:5]).run_id == gd
    assert reg.get(str(folder)).run_id == gd
    with pytest.raises(ValueError, match="no run 'zzz'"):
        reg.get("zzz")
    with pytest.raises(ValueError, match="'ab' is ambiguous: abc0, abc1"):
        reg.get("ab")


def test_latest_deliverables_history(runs: Path) -> None:
    reg, _ = open_indexed(runs)
    assert reg.latest("layer4_architectures", "gpt").metrics["val_loss"] == 2.5
    assert reg.latest("layer4_architectures", "bert") is None  # only a failed run
    assert reg.latest("layer4_architectures", "bert", status="failed") is not None
    assert reg.deliverables() == [
        ("layer0_math", "gd"),
        ("layer4_architectures", "bert"),
        ("layer4_architectures", "gpt"),
    ]
    history = reg.metric_history("layer4_architectures", "gpt", "val_loss")
    assert [(s[:10], v) for s, v, _ in history] == [("2026-01-01", 3.0), ("2026-01-02", 2.5)]


def test_sub_runs_are_nested(runs: Path) -> None:
    parent = runs / "layer0_math" / "gd" / "latest"
    with open_run("layer3_framework", "train", preset="hydra", seed=0, config={},
                  run_dir=parent / "train", kind="train") as ctx:  # fmt: skip
        ctx.record_metrics({"val_loss": 0.1})
    reg, report = open_indexed(runs)
    assert report.added == 5
    sub = reg.runs(kind="train")[0]
    assert sub.nested and not reg.latest("layer0_math", "gd").nested
    assert reg.runs(nested=True) == [sub] and len(reg.runs(nested=False)) == 4
    assert reg.latest("layer3_framework", "train") is None  # a sub-run is no deliverable's latest
    assert ("layer3_framework", "train") not in reg.deliverables(kinds=None)
    assert reg.best("val_loss") == sub  # but it is a run: queries find it
    assert reg.best("val_loss", nested=False).deliverable == "gd"


def test_cli_marks_sub_runs(runs: Path, capsys) -> None:
    parent = runs / "layer0_math" / "gd" / "latest"
    owner = read_manifest(parent)["run_id"]
    with open_run("layer3_framework", "train", preset="hydra", seed=0, config={},
                  run_dir=parent / "train", kind="train", parent_id=owner):  # fmt: skip
        pass
    owner = owner[:8]
    assert registry_cli.main(["runs", "--runs-dir", str(runs)]) == 0
    assert f"train (in {owner})" in capsys.readouterr().out
    assert registry_cli.main(["runs", "--runs-dir", str(runs), "--top-level"]) == 0
    out = capsys.readouterr().out
    assert "train" not in out and "4 run(s)" in out


def test_best_infers_the_direction(runs: Path) -> None:
    reg, _ = open_indexed(runs)
    assert (
        infer_mode("val_loss") == infer_mode("lstm_val_bpb") == infer_mode("train_seconds") == "min"
    )
    assert infer_mode("ddim50_kid") == infer_mode("dpo_kl") == infer_mode("gpt_onnx_bytes") == "min"
    assert infer_mode("test_accuracy") == infer_mode("tokens_per_second") == "max"
    assert reg.best("val_loss").deliverable == "gd"  # min; the failed bert (9.0) is not ok
    assert reg.best("val_loss", layer="4").metrics["val_loss"] == 2.5
    assert reg.best("val_loss", mode="max", layer="4").metrics["val_loss"] == 3.0
    assert reg.best("acc").metrics["acc"] == 0.5  # max
    with pytest.raises(ValueError, match="'nope'"):
        reg.best("nope")
    with pytest.raises(ValueError, match="'up'"):
        reg.best("acc", mode="up")


def test_compare_diffs_nested_config_and_metrics(runs: Path) -> None:
    reg, _ = open_indexed(runs)
    old, new = reversed(reg.runs(deliverable="gpt"))
    c = reg.compare(old.run_id, new.run_id)
    assert c.config == {"lr": (0.1, 0.2), "optim.eps": (ABSENT, 1e-8)}
    assert c.metrics["val_loss"] == (3.0, 2.5, -0.5)
    assert c.metrics["acc"][2] == pytest.approx(-0.1)


def test_incremental_updates_and_removals(runs: Path) -> None:
    reg, _ = open_indexed(runs)
    assert reg.index().unchanged == 4
    gpt = reg.latest("layer4_architectures", "gpt")
    write_json(gpt.path / "metrics.json", {"val_loss": 2.0, "acc": 0.6, "x": 1})
    gd = reg.latest("layer0_math", "gd")
    for p in sorted(gd.path.iterdir()):
        p.unlink()
    gd.path.rmdir()
    report = reg.index()
    assert (report.updated, report.removed, report.unchanged) == (1, 1, 2)
    assert reg.get(gpt.run_id).metrics == {"val_loss": 2.0, "acc": 0.6, "x": 1.0}
    db = sqlite3.connect(runs / "registry.sqlite")
    assert db.execute("SELECT count(*) FROM metrics WHERE run_id = ?", (gd.run_id,)).fetchone() == (
        0,
    )
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (3,)


def test_bad_manifests_are_skipped_with_reasons(runs: Path) -> None:
    def manifest_at(rel: str, text: str) -> None:
        (runs / rel).mkdir(parents=True)
        (runs / rel / "manifest.json").write_text(text)

    good = read_manifest(runs / "layer0_math" / "gd" / "latest")
    manifest_at("layer0_math/x/1", json.dumps(good)[:40])  # truncated
    manifest_at("layer0_math/x/2", "[1, 2]")
    manifest_at("layer0_math/x/3", json.dumps({**good, "run_id": "other", "status": "done"}))
    manifest_at("layer0_math/x/4", json.dumps({**good, "run_id": "n", "schema_version": 99}))
    manifest_at("layer0_math/x/5", json.dumps(good))  # a copy: the same run id
    (runs / "layer0_math/x/6").mkdir()
    (runs / "layer0_math/x/6/.manifest.json.tmp-123-abcd").write_text("{")
    # layer 6's model registry holds model versions, not runs: not even looked at, and a model
    # version inside a run's folder (a retraining loop's registry) is recognised by its shape
    manifest_at("registry/resnet/1", json.dumps({"name": "resnet", "version": 1}))
    version = {"name": "resnet", "version": 1, "created": "2026-01-01", "kind": "classifier"}
    manifest_at("layer0_math/gd/latest/registry/resnet/1", json.dumps(version))
    reg, report = open_indexed(runs)
    reasons = {str(p.parent.relative_to(runs / "layer0_math/x")): w for p, w in report.skipped}
    assert report.added == 4 and set(reasons) == {"1", "2", "3", "4", "5", "6"}
    assert "not valid JSON" in reasons["1"] and "JSON list" in reasons["2"]
    assert "'done'" in reasons["3"] and "schema_version 99" in reasons["4"]
    assert good["run_id"] in reasons["5"] and "half-written" in reasons["6"]
    assert reg.index().skipped == report.skipped  # reported again until fixed
    (runs / "layer0_math/x/3/manifest.json").write_text(json.dumps({**good, "run_id": "fixed"}))
    assert reg.index().added == 1 and reg.get("fixed").deliverable == "gd"


def test_a_crash_mid_index_leaves_the_database_as_it_was(runs: Path, monkeypatch) -> None:
    reg, _ = open_indexed(runs)
    make_run(runs, "layer0_math", "late", {"val_loss": 0.5})
    calls = {"n": 0}
    real = Indexer._read

    def dies_midway(self, rel, folder, nested):
        calls["n"] += 1
        real(self, rel, folder, nested)  # the row is written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(Indexer, "_read", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        reg.index()
    assert calls["n"] == 1
    db = sqlite3.connect(runs / "registry.sqlite")
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (4,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_indexer_that_waited_sees_what_another_committed(runs: Path) -> None:
    first, second = Registry.open(runs), Registry.open(runs)
    waiting = Indexer(second.conn, runs)  # made before the first index commits
    assert first.index().added == 4
    report = waiting.run()
    assert (report.added, report.unchanged, report.skipped) == (0, 4, [])


def test_cli_tables_and_errors(runs: Path, capsys) -> None:
    assert registry_cli.main(["runs", "--runs-dir", str(runs), "--layer", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("layer4_architectures") == 3 and "val_loss=2.5" in out and "3 run(s)" in out
    gd = Registry.open(runs).runs(deliverable="gd")[0]
    assert registry_cli.main(["show", gd.run_id[:10], "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert gd.run_id in out and str(gd.path) in out and "val_loss = 1" in out
    assert registry_cli.main(["best", "--metric", "val_loss", "--runs-dir", str(runs)]) == 0
    assert "(min, inferred from the name): 1" in capsys.readouterr().out
    old, new = (r.run_id for r in reversed(Registry.open(runs).runs(deliverable="gpt")))
    assert registry_cli.main(["compare", old[:8], new[:8], "--runs-dir", str(runs)]) == 0
    rows = [[c.strip() for c in line.split(" | ")] for line in capsys.readouterr().out.splitlines()]
    assert ["optim.eps", "(absent)", "1e-08"] in rows and ["val_loss", "3", "2.5", "-0.5"] in rows
    (runs / "layer0_math/bad/1").mkdir(parents=True)
    (runs / "layer0_math/bad/1/manifest.json").write_text("{")
    assert registry_cli.main(["index", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "4 unchanged" in out and "1 skipped" in out
    assert "bad/1/manifest.json: not valid JSON" in out
    for argv in (["show", "zzz"], ["runs", "--since", "soon"], ["runs", "--bogus"]):
        with pytest.raises(SystemExit) if "--bogus" in argv else contextlib.nullcontext():
            assert registry_cli.main([*argv, "--runs-dir", str(runs)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def write_synthetic(root: Path, n: int) -> None:
    """``n`` schema-1 manifests (+ metrics) written with json: 4 layers, 25 deliverables."""
    for i in range(n):
        folder = root / f"layer{i % 4}_x" / f"d{i % 25}" / f"{i:06d}"
        folder.mkdir(parents=True)
        start = (dt.datetime(2026, 1, 1) + dt.timedelta(minutes=i)).isoformat()
        man = {
            "schema_version": 1,
            "run_id": hashlib.md5(str(i).encode()).hexdigest(),
            "parent_id": None,
            "kind": "deliverable",
            "layer": f"layer{i % 4}_x",
            "deliverable": f"d{i % 25}",
            "preset": "quick",
            "seed": 0,
            "config": {"lr": i},
            "config_hash": "h",
            "status": "failed" if i % 10 == 0 else "ok",
            "error": None,
            "git": {"commit": "c", "dirty": False},
            "host": {"cpus": 2},
            "start": start,
            "seconds": 1.0,
            "peak_memory": {"rss_mib": 10.0, "cuda_mib": None},
        }
        (folder / "manifest.json").write_text(json.dumps(man))
        (folder / "metrics.json").write_text(json.dumps({"val_loss": 1 + (i * 7919 % n) / n}))


@pytest.mark.slow
def test_ten_thousand_runs(tmp_path: Path) -> None:
    n = 10_000
    write_synthetic(tmp_path, n)
    reg = Registry.open(tmp_path)
    report = reg.index()
    print(f"\nindexed {n} manifests in {report.seconds:.2f} s; again in ", end="")
    assert report.added == n and report.seconds < 60  # a smoke bound; the figure is printed
    again = reg.index()
    print(f"{again.seconds:.2f} s (unchanged)")
    assert again.unchanged == n
    timings = {}
    for name, query in {
        "runs": lambda: reg.runs(layer="2", deliverable="d2", status="ok", limit=20),
        "runs since": lambda: reg.runs(since="2026-01-07", limit=50),
        "best": lambda: reg.best("val_loss", layer="layer1_x"),
        "get": lambda: reg.get(hashlib.md5(b"4321").hexdigest()[:10]),
        "history": lambda: reg.metric_history("layer3_x", "d3", "val_loss"),
    }.items():
        t0 = time.perf_counter()
        result = query()
        timings[name] = (time.perf_counter() - t0) * 1000
        assert result
    print("query ms: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert max(timings.values()) < 100, timings
    # independent: the minimum straight from the table
    db = sqlite3.connect(tmp_path / "registry.sqlite")
    expected = db.execute(
        "SELECT min(m.value) FROM metrics m JOIN runs r USING (run_id) "
        "WHERE r.layer = 'layer1_x' AND r.status = 'ok'"
    ).fetchone()[0]
    assert reg.best("val_loss", layer="layer1_x").metrics["val_loss"] == expected
