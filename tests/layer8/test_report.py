"""The report, checked against the runs planted for it.

A synthetic workspace in tmp (manifests written by ``open_run``, so the schema is the real one):
layer 0 has ``alpha`` (3 ok runs: a trend), ``beta`` (ok, then failed with ``<script>`` in its
error) and ``gamma`` (never run); layer 1 has ``delta`` (one ok run with a plot and a
checkpoints folder); layer 5 has ``eps`` (never run: a layer with no runs). The pages are parsed
back (html.parser, the Markdown's headings) and compared with what was planted; the verdicts
with ones computed here from the planted numbers.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from layer0_math import runrecord
from layer0_math.lab import REPO_ROOT, open_run, pyplot
from layer8_meta.registry import Registry
from layer8_meta.report import build_report, load_targets
from layer8_meta.report.collect import Expected, Group
from layer8_meta.report.media import series_labels
from layer8_meta.report.targets import Target

EVIL = "<script>alert('x')</script> & more"
ALPHA_ACC = (0.5, 0.7, 0.9)  # oldest first; the latest, 0.9, is the one checked
ALPHA_LOSS = (1.0, 0.8, 0.6)
DELTA_ERR = 0.25
GIT = {"commit": "0123456789abcdef", "dirty": True, "changes_hash": "f" * 64}
CATALOG = [
    Group(
        "layer0_math",
        "make layer0",
        [
            Expected("alpha", ("acc", "loss"), "make layer0"),
            Expected("beta", ("err",), "make layer0"),
            Expected("gamma", ("acc",), "make layer0"),
        ],
    ),
    Group("layer1_autograd", "make layer1", [Expected("delta", ("err",), "make layer1")]),
    Group("layer5_training", "make layer5", [Expected("eps", ("acc",), "make layer5")]),
]
TARGETS = [
    Target("layer0_math", "alpha", "acc", 0.8, ">=", "issue 99"),  # 0.9 >= 0.8: met
    Target("layer0_math", "alpha", "loss", 0.5, "<=", "issue 99"),  # 0.6 <= 0.5: missed
    Target("layer0_math", "alpha", "acc", 0.95, ">=", "issue 99", preset="full"),  # n/a: quick
    Target("layer1_autograd", "delta", "err", 0.3, "<=", "issue 98"),  # 0.25 <= 0.3: met
    Target("layer1_autograd", "delta", "seconds", 1e-9, "<=", "issue 98"),  # any run: missed
]
EXPECTED_VERDICTS = {
    ("alpha", "acc"): ["met"],
    ("alpha", "loss"): ["missed"],
    ("delta", "err"): ["met"],
    ("delta", "seconds"): ["missed"],
}
EXPECTED_STATUS = {
    "alpha": "ok",
    "beta": "failed",
    "gamma": "not run",
    "delta": "ok",
    "eps": "not run",
}


def _set_start(run: Path, when: dt.datetime) -> None:
    path = run / "manifest.json"
    man = json.loads(path.read_text())
    man["start"] = when.isoformat(timespec="seconds")
    path.write_text(json.dumps(man))


def _run(
    runs: Path,
    layer: str,
    name: str,
    metrics: dict,
    day: int,
    fail: str | None = None,
    config: dict | None = None,
    run_dir: Path | None = None,
) -> Path:
    with pytest.raises(ValueError) if fail else contextlib.nullcontext():
        with open_run(
            layer, name, preset="quick", seed=0, config=config or {}, runs_dir=runs,
            run_dir=run_dir,
        ) as ctx:  # fmt: skip
            ctx.record_metrics(metrics)
            run = ctx.out_dir
            if fail:
                raise ValueError(fail)
    _set_start(run, dt.datetime(2026, 1, day, 12, 0, 0))
    return run


def make_workspace(root: Path) -> Path:
    """The planted runs under ``root/runs`` (recorded at a fixed commit: no git calls)."""
    runs = root / "runs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runrecord, "git_state", lambda where=None: GIT)
        _plant(runs)
    return runs


def _plant(runs: Path) -> None:
    for i, (acc, loss) in enumerate(zip(ALPHA_ACC, ALPHA_LOSS, strict=True)):
        config = {"lr": 2} if i == len(ALPHA_ACC) - 1 else {}  # the latest ran another config
        alpha = _run(runs, "layer0_math", "alpha", {"acc": acc, "loss": loss}, 1 + i, None, config)
    # a run of alpha inside alpha's latest run folder (a worked example, a test's sandbox),
    # newer than it: a detail of that run, never alpha's latest nor a point of its trend
    _run(runs, "layer0_math", "alpha", {"acc": 0.01}, day=9, run_dir=alpha / "runs" / "inner")
    _run(runs, "layer0_math", "beta", {"err": 0.1}, day=1)
    _run(runs, "layer0_math", "beta", {}, day=5, fail=EVIL)
    delta = _run(runs, "layer1_autograd", "delta", {"err": DELTA_ERR, "note": "text"}, day=2)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(delta / "curve.png")
    plt.close(fig)
    (delta / "checkpoints").mkdir()
    (delta / "checkpoints" / "step_1.safetensors").write_bytes(b"0")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("planted"))


def copy_of(runs: Path, root: Path) -> Path:
    ignore = shutil.ignore_patterns("registry.sqlite*")
    shutil.copytree(runs, root / "runs", symlinks=True, ignore=ignore)  # latest stays a link
    return root / "runs"


def build(root: Path, runs: Path, out: Path | None = None):
    reg = Registry.open(runs)
    try:
        index = reg.index()
        return build_report(
            reg, out or root / "report", catalog=CATALOG, targets=TARGETS, index_report=index
        )
    finally:
        reg.close()


class Page(HTMLParser):
    """What the report's HTML says, read back: per article, its status badge and table rows;
    every src and href; the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, str] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self._article: str | None = None
        self._in_h3 = self._in_badge = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.lists: dict[str, list[str]] = {}
        self._list: str | None = None
        self._item: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "article":
            self._article = (a.get("id") or "").split("-", 1)[-1]
            self.rows[self._article] = []
        elif tag == "h3":
            self._in_h3 = True
        elif tag == "span" and "badge" in (a.get("class") or "") and self._in_h3:
            self._in_badge = True
        elif tag == "tr" and self._article:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "ul" and a.get("id"):
            self._list = a["id"]
            self.lists[self._list] = []
        elif tag == "li" and self._list:
            self._item = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self._in_h3 = False
        elif tag == "span":
            self._in_badge = False
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._article:
                self.rows[self._article].append(self._row)
            self._row = None
        elif tag == "article":
            self._article = None
        elif tag == "li" and self._list and self._item is not None:
            self.lists[self._list].append(" ".join("".join(self._item).split()))
            self._item = None
        elif tag == "ul":
            self._list = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_badge and self._article:
            self.status[self._article] = data.strip()
        if self._cell is not None:
            self._cell.append(data)
        if self._item is not None:
            self._item.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory, planted):
    root = tmp_path_factory.mktemp("report")
    runs = copy_of(planted, root)
    result = build(root, runs)
    return root, runs, result, parse(result.html)


def test_every_deliverable_appears_with_its_status(built):
    _, _, result, page = built
    assert page.status == EXPECTED_STATUS
    assert result.deliverables == len(EXPECTED_STATUS)
    assert result.layers_without_runs == ["layer5_training"]
    assert "commit 0123456789 (dirty)" in "".join(page.text)
    assert "make layer5" in "".join(page.text)  # the command that makes the missing layer


def test_targets_are_marked_met_or_missed_from_the_planted_numbers(built):
    _, _, result, page = built
    verdicts: dict[tuple[str, str], list[str]] = {}
    for deliverable, rows in page.rows.items():
        for metric, _value, target, verdict in (r for r in rows if len(r) == 4):
            if target:
                verdicts.setdefault((deliverable, metric), []).append(verdict)
    assert verdicts == EXPECTED_VERDICTS  # the full-preset target does not apply to quick runs
    values = {(d, r[0]): r[1] for d, rows in page.rows.items() for r in rows if len(r) == 4}
    assert float(values[("alpha", "acc")]) == ALPHA_ACC[-1]  # the latest run, not an older one
    assert float(values[("delta", "err")]) == DELTA_ERR
    missed = [k for k, vs in EXPECTED_VERDICTS.items() for v in vs if v == "missed"]
    listed = page.lists["missed"]  # the summary's list of the targets missed, in page order
    assert [item.split(" = ")[0].split("/")[1] for item in listed] == [
        f"{deliverable}: {metric}" for deliverable, metric in missed
    ]
    flat = [v for vs in EXPECTED_VERDICTS.values() for v in vs]
    assert (result.targets_met, result.targets_missed) == (flat.count("met"), flat.count("missed"))


def test_a_failed_run_shows_its_error_escaped(built):
    _, _, result, page = built
    raw = result.html.read_text()
    assert "<script>" not in raw and "script" not in page.tags
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in raw
    assert f"ValueError: {EVIL}" in "".join(page.text)  # the text a reader sees, intact
    assert "last ok run" in "".join(page.text)  # beta's earlier ok run is pointed at
    assert [r for r in page.rows["beta"] if len(r) == 4] == []  # no table of blanks
    md = result.markdown.read_text()
    assert "ValueError: <script>" in md and "### beta: failed" in md


def test_trend_chart_only_where_there_are_two_ok_runs(built):
    root, _, result, page = built
    trends = root / "report" / "assets" / "trends"
    alpha = trends / "layer0_math__alpha.png"
    with Image.open(alpha) as im:
        assert im.width > 300 and im.height > 100
    assert sorted(p.name for p in trends.iterdir()) == ["layer0_math__alpha.png"]
    assert "assets/trends/layer0_math__alpha.png" in page.refs


def test_every_image_and_link_resolves_inside_the_folder(built):
    root, _, result, page = built
    out = result.html.parent
    local = [r for r in page.refs if not r.startswith("#")]
    assert not [r for r in local if "://" in r or r.startswith("//")]  # offline: nothing remote
    missing = [r for r in local if not (out / r).exists()]
    assert missing == []
    copied = {r for r in local if r.endswith(".png") and r.startswith("assets/runs/")}
    assert [Path(r).name for r in copied] == ["curve.png"]  # delta's plot, copied
    assert any(r.endswith("/checkpoints") for r in local)  # linked, not copied
    anchors = {r[1:] for r in page.refs if r.startswith("#")}
    ran = {"layer0_math-alpha", "layer0_math-beta", "layer1_autograd-delta"}
    assert ran <= anchors  # the latest-runs table links each deliverable that ran
    for r in local:  # a link written from a run's artifacts is a real copy of it
        if r.endswith("metrics.json") and "/alpha/" in r:
            assert json.loads((out / r).read_text())["acc"] == ALPHA_ACC[-1]


def test_the_markdown_has_the_same_statuses(built):
    _, _, result, _ = built
    md = result.markdown.read_text()
    heads = [line[4:] for line in md.splitlines() if line.startswith("### ")]
    statuses = dict(h.rsplit(": ", 1) for h in heads if h not in ("Latest runs", "Targets missed"))
    assert statuses == EXPECTED_STATUS
    assert "| `loss` | 0.6 | <= 0.5 (issue 99) | missed |" in md


def test_rebuild_prunes_its_own_stale_assets_and_refuses_foreign_files(tmp_path, planted):
    runs = copy_of(planted, tmp_path)
    out = tmp_path / "report"
    build(tmp_path, runs, out)
    stale = out / "assets" / "runs" / "old.png"
    stale.write_bytes(b"x")
    mine = out / "notes.txt"  # a learner's file beside the report: never touched
    mine.write_text("mine")
    build(tmp_path, runs, out)
    assert not stale.exists() and mine.read_text() == "mine"
    foreign = tmp_path / "elsewhere"
    foreign.mkdir()
    (foreign / "report.html").write_text("<html>my own page</html>")
    with pytest.raises(ValueError, match="was not written by the report"):
        build(tmp_path, runs, foreign)
    assert (foreign / "report.html").read_text() == "<html>my own page</html>"


def test_cli_prints_where_it_wrote_and_fails_with_one_line(tmp_path, planted, monkeypatch, capsys):
    from layer8_meta.report import build as build_module
    from layer8_meta.report import cli

    runs = copy_of(planted, tmp_path)
    monkeypatch.setattr(build_module, "code_catalog", lambda: CATALOG)
    assert cli.main(["--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {runs / 'report' / 'report.html'}" in out
    assert "no runs yet: layer5_training" in out
    assert (runs / "report" / "report.md").exists()
    assert cli.main(["--runs-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs folder") and err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  - {layer: a, deliverable: b, metric: c, goal: 1, "
                   "direction: '>', source: s}\n")  # fmt: skip
    assert cli.main(["--runs-dir", str(runs), "--targets", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "direction '>'" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("direction", "value", "verdict"),
    [(">=", 1.0, "met"), (">=", 0.999, "missed"), ("<=", 1.0, "met"), ("<=", 1.001, "missed"),
     (">=", None, "no value"), ("<=", float("nan"), "no value")],
)  # fmt: skip
def test_verdict_at_the_boundary(direction, value, verdict):
    assert Target("l", "d", "m", 1.0, direction, "s").verdict(value) == verdict


def test_bad_targets_files_are_errors_naming_the_entry(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("targets:\n  - {layer: a, deliverable: b, metric: c, goal: fast, "
                    "direction: '>=', source: s}\n")  # fmt: skip
    with pytest.raises(ValueError, match=r"target 1: goal 'fast' is not a finite number"):
        load_targets(path)
    path.write_text("targets:\n  - {layer: a, deliverable: b, metric: c, goal: 1}\n")
    with pytest.raises(ValueError, match=r"missing \['direction', 'source'\]"):
        load_targets(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="list under 'targets'"):
        load_targets(path)


def _deliverables_in_code(layer: str) -> list[str]:
    """The names in ``<layer>/deliverables/__init__.py``'s ``__all__``, read with ast (not by
    importing: independent of the report's catalog)."""
    tree = ast.parse((REPO_ROOT / layer / "deliverables" / "__init__.py").read_text())
    for node in ast.walk(tree):
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
        if any(getattr(t, "id", None) == "__all__" for t in targets) and node.value is not None:
            return list(ast.literal_eval(node.value))
    return []


def test_the_real_targets_name_deliverables_and_metrics_that_exist():
    targets = load_targets()
    assert len(targets) >= 40
    for t in targets:
        if t.layer == "benchmarks":
            source = REPO_ROOT / "benchmarks" / f"{t.deliverable}.py"
            assert source.exists(), t
            code = source.read_text()
        else:
            assert t.deliverable in _deliverables_in_code(t.layer), t
            code = "".join(p.read_text() for p in (REPO_ROOT / t.layer).rglob("*.py"))
        assert t.metric == "seconds" or f'"{t.metric}"' in code, f"{t}: no key {t.metric!r}"
    keys = [(t.layer, t.deliverable, t.metric, t.direction, t.preset) for t in targets]
    assert len(keys) == len(set(keys)), "a goal is listed twice"


def test_check_targets_names_a_metric_the_runs_never_recorded(tmp_path, planted, capsys):
    from layer8_meta.report import cli

    runs = copy_of(planted, tmp_path)
    path = tmp_path / "t.yaml"
    entry = (
        "  - {{layer: layer0_math, deliverable: {d}, metric: {m}, goal: 1, direction: '>=', "
        "source: s}}\n"
    )
    rows = [("alpha", "acc"), ("alpha", "accuracy"), ("gamma", "anything"), ("alpha", "seconds")]
    path.write_text("targets:\n" + "".join(entry.format(d=d, m=m) for d, m in rows))
    assert cli.main(["--runs-dir", str(runs), "--targets", str(path), "--check-targets"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1  # gamma has no ok run: not checkable; seconds is always recorded
    assert lines[0].startswith("layer0_math/alpha: no metric 'accuracy' in its latest ok run")
    assert not (runs / "report").exists()  # a check writes nothing


def test_trend_series_split_where_the_config_changed(built):
    _, runs, _, _ = built
    reg = Registry.open(runs)
    try:
        rows = reg.runs(layer="layer0_math", deliverable="alpha", status="ok", nested=False)
        labels = series_labels(rows)
    finally:
        reg.close()
    assert len(rows) == len(ALPHA_ACC)  # the nested run is not one of alpha's runs
    by_config = {r.config_hash: labels[r.run_id] for r in rows}
    assert len(by_config) == 2 and len(set(by_config.values())) == 2
    for config_hash, label in by_config.items():
        assert label == f"quick preset, config {config_hash[:6]}"


def test_a_report_inside_the_runs_folder_adds_no_runs_to_the_registry(tmp_path, planted):
    runs = copy_of(planted, tmp_path)
    build(tmp_path, runs, runs / "report")  # the default place: <runs>/report
    reg = Registry.open(runs)
    try:
        again = reg.index()
    finally:
        reg.close()
    assert (again.added, again.skipped) == (0, [])  # no copied manifest.json looks like a run
    assert list((runs / "report").rglob("manifest.json")) == []


def test_a_fresh_clone_gets_a_report_of_nothing_run(tmp_path, monkeypatch, capsys):
    from layer8_meta.report import build as build_module
    from layer8_meta.report import cli

    runs = tmp_path / "fresh" / "runs"  # $DLSTACK_RUNS names a folder that is not there yet
    monkeypatch.setenv("DLSTACK_RUNS", str(runs))
    monkeypatch.setattr(build_module, "code_catalog", lambda: CATALOG)
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    layers = [g.layer for g in CATALOG]
    assert [line for line in out.splitlines() if line.startswith("no runs yet")] == [
        f"no runs yet: {layer}" for layer in layers
    ]
    page = parse(runs / "report" / "report.html")
    assert set(page.status.values()) == {"not run"}
    assert len(page.status) == sum(len(g.expected) for g in CATALOG)
