"""Mastery mode: the swap (on a throw-away package), the scorecard, concepts.yaml, and the proof:
layer 1's value tests pass on a second, different engine and fail, teaching, on a broken one."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

from layer0_math.lab import REPO_ROOT
from layer8_meta.mastery import cli
from layer8_meta.mastery.swap import Swap, SwapError, format_env, install, parse_env

IMPLS = Path(__file__).with_name("mastery_impls")

CORE = """
__all__ = ["Thing", "helper", "LIMIT"]
LIMIT = 1
class Thing:
    kind = "reference"
def helper():
    return "reference"
"""
MINE = """
__all__ = ["Thing", "helper", "LIMIT"]
LIMIT = 2
class Thing:
    kind = "mine"
def helper():
    return "mine"
"""


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A package ``h6pkg``: core (the reference), a re-export in __init__, a user module."""
    root = tmp_path / "h6pkg"
    root.mkdir()
    (root / "__init__.py").write_text("from h6pkg.core import Thing, helper\n")
    (root / "core.py").write_text(CORE)
    (root / "user.py").write_text(
        "from h6pkg.core import LIMIT, Thing\nfrom h6pkg import core as C\ncount = 1\n"
        "def make():\n    return Thing()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "h6pkg" or m.startswith("h6pkg.")]:
        del sys.modules[name]


def test_install_rebinds_the_module_the_reexport_and_the_importers(pkg, tmp_path):
    import h6pkg
    import h6pkg.user

    mine = tmp_path / "my_core.py"
    mine.write_text(MINE)
    install(Swap("h6pkg.core", mine), root=tmp_path)
    assert sys.modules["h6pkg.core"].Thing.kind == "mine"
    assert h6pkg.core.helper() == "mine"
    assert h6pkg.Thing.kind == "mine" and h6pkg.helper() == "mine"  # the re-export
    assert h6pkg.user.make().kind == "mine"  # `from h6pkg.core import Thing` in another module
    assert h6pkg.user.C.Thing.kind == "mine"  # the module object itself, under an alias
    # an int is shared by identity across modules: never moved (count = 1 is not LIMIT = 1)
    assert h6pkg.user.count == 1 and h6pkg.user.LIMIT == 1


def test_missing_names_are_listed_before_anything_is_swapped(pkg, tmp_path):
    import h6pkg

    mine = tmp_path / "partial.py"
    mine.write_text("class Thing:\n    kind = 'mine'\n")
    with pytest.raises(SwapError, match=r"does not define helper, LIMIT: the tests of h6pkg.core"):
        install(Swap("h6pkg.core", mine), root=tmp_path)
    assert h6pkg.Thing.kind == "reference" and sys.modules["h6pkg.core"].Thing.kind == "reference"


def test_bad_swaps_are_clear_errors(pkg, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    with pytest.raises(SwapError, match="broken.py: importing it failed: SyntaxError"):
        install(Swap("h6pkg.core", broken), root=tmp_path)
    assert "h6pkg.core" in sys.modules and sys.modules["h6pkg.core"].Thing.kind == "reference"
    with pytest.raises(SwapError, match="expected an existing Python file"):
        install(Swap("h6pkg.core", tmp_path / "nope.py"), root=tmp_path)
    with pytest.raises(SwapError, match="'h6pkg' is a package|a layer's module"):
        install(Swap("h6pkg", broken), root=tmp_path)
    with pytest.raises(SwapError, match="'h6pkg.nothing' is not an importable module"):
        install(Swap("h6pkg.nothing", broken), root=tmp_path)


def test_the_environment_form_round_trips(tmp_path):
    swaps = [Swap("a.b", tmp_path / "x.py"), Swap("c.d", tmp_path / "y.py")]
    assert parse_env(format_env(swaps)) == swaps
    assert parse_env("") == []
    with pytest.raises(SwapError, match="expected module=/path/to/file.py, got 'a.b'"):
        parse_env("a.b")


def test_every_concept_names_a_real_module_and_real_tests():
    concepts = cli.load_concepts()
    for c in concepts.values():
        module_file = REPO_ROOT / (c.target.replace(".", "/") + ".py")
        assert module_file.is_file(), f"{c.name}: no module {c.target}"
        for t in c.tests:
            assert (REPO_ROOT / t).is_file(), f"{c.name}: no test file {t}"
    layers = {c.layer for c in concepts.values()}
    assert layers == set(range(8))
    for layer in layers:
        members = [c for c in concepts.values() if c.layer == layer]
        assert len(members) >= 2 and any(c.model for c in members), f"layer {layer}"
    assert sum(c.layer == 1 for c in concepts.values()) >= 4
    assert sum(c.layer == 2 for c in concepts.values()) >= 4
    assert len({c.target for c in concepts.values()}) == len(concepts)  # target -> one concept


def test_a_malformed_concept_is_named(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("value:\n  layer: 1\n  tests: [a.py]\n")
    with pytest.raises(ValueError, match="concept 'value' has no 'target'"):
        cli.load_concepts(bad)


def _entry(impl: Path, passed: int, failed: int, full: bool = True) -> dict:
    return {
        "target": "t",
        "impl": str(impl),
        "sha256": hashlib.sha256(impl.read_bytes()).hexdigest(),
        "passed": passed,
        "failed": failed,
        "skipped": 0,
        "full": full,
        "pytest_exit": 1 if failed else 0,
        "date": "2026-12-03T12:00:00+00:00",
    }


def test_scorecard_statuses_and_the_readiness_rule(tmp_path):
    concepts = {
        "eng": cli.Concept("eng", 1, "x.eng", ("t.py",), False, "an engine"),
        "net": cli.Concept("net", 1, "x.net", ("t.py",), True, "a model"),
        "conv": cli.Concept("conv", 2, "x.conv", ("t.py",), True, "a conv net"),
    }
    f = tmp_path / "net.py"
    f.write_text("v = 1\n")
    progress = {"concepts": {"eng": _entry(f, 3, 2), "net": _entry(f, 5, 0)}}
    lines = cli.scorecard(concepts, progress)
    assert lines[0] == "layer 1: 2 concepts: 1 passing, 1 failing"
    assert lines[1].split()[:4] == ["eng", "failing", "3", "passed,"]
    assert lines[2].split()[:2] == ["net", "passing"] and lines[2].endswith("[model]")
    assert lines[3] == "  -> ready for layer 2: net passes (a model)"
    assert lines[4] == "layer 2: 1 concepts: 1 not tried"
    assert lines[6] == "  -> not ready for layer 3: pass the full tests of one model (conv)"

    f.write_text("v = 2\n")  # the file moved on since it passed
    lines = cli.scorecard(concepts, progress)
    assert lines[2].split()[1:3] == ["changed", "since"]
    assert lines[3].startswith("  -> not ready for layer 2")
    progress["concepts"]["net"] = _entry(f, 5, 0, full=False)  # a subset passed: partial
    assert cli.scorecard(concepts, progress)[2].split()[1] == "partial"


def test_record_keeps_the_newest_and_a_history(tmp_path):
    f = tmp_path / "v.py"
    f.write_text("x = 1\n")
    cli.record(tmp_path, "value", _entry(f, 1, 1))
    path = cli.record(tmp_path, "value", _entry(f, 2, 0))
    data = json.loads(path.read_text())
    assert path == tmp_path / "mastery" / "progress.json"
    assert data["concepts"]["value"]["passed"] == 2
    assert [h["passed"] for h in data["concepts"]["value"]["history"]] == [1]


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "my_value.py"
    empty.write_text("def value():\n    return 1\n")
    assert cli.main(["test-mine", "--impl", str(empty), "--target", "layer1_autograd.value"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and "does not define Value" in out and out.count("\n") == 1
    assert cli.main(["test-mine", "--impl", str(empty), "--target", "layer1_autograd.nope"]) == 2
    assert "no concept has that target; known: " in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert not (Path(os.environ["DLSTACK_RUNS"]) / "mastery").exists()  # nothing recorded


def test_progress_on_no_attempts_and_on_a_corrupt_record(tmp_path, capsys):
    assert cli.main(["progress", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "layer 0: 2 concepts: 2 not tried"
    assert out[-1].startswith(f"(from {tmp_path / 'mastery' / 'progress.json'};")
    corrupt = tmp_path / "mastery" / "progress.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"concepts": [')
    assert cli.main(["progress", "--runs-dir", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().out
        == f"error: {corrupt} is not a progress record: repair it or move it away\n"
    )
    impl = str(IMPLS / "alt_value.py")
    argv = ["test-mine", "--impl", impl, "--target", "layer1_autograd.value"]
    assert cli.main([*argv, "--runs-dir", str(tmp_path)]) == 2  # before any test runs
    assert corrupt.read_text() == '{"concepts": ['  # kept as it was


def _test_mine(impl: str, runs: Path, *extra: str) -> int:
    argv = ["test-mine", "--impl", str(IMPLS / impl), "--target", "layer1_autograd.value"]
    return cli.main([*argv, "--runs-dir", str(runs), *extra])


@pytest.mark.slow
def test_a_different_engine_passes_the_value_tests(tmp_path, capfd):
    assert _test_mine("alt_value.py", tmp_path) == 0
    out = capfd.readouterr().out
    assert f"mastery: layer1_autograd.value = {IMPLS / 'alt_value.py'} (the learner's)" in out
    assert "test-mine value: 10 passed, 0 failed, 0 skipped: all pass;" in out
    entry = json.loads((tmp_path / "mastery" / "progress.json").read_text())["concepts"]["value"]
    digest = hashlib.sha256((IMPLS / "alt_value.py").read_bytes()).hexdigest()
    assert entry["sha256"] == digest
    assert (entry["passed"], entry["failed"], entry["full"]) == (10, 0, True)
    assert entry["tests"] == ["tests/layer1/test_value.py", "tests/layer1/test_value_nn.py"]


@pytest.mark.slow
def test_a_broken_engine_fails_and_says_expected_got_and_by_how_much(tmp_path, capfd):
    assert _test_mine("broken_value.py", tmp_path, "--tests", "tests/layer1/test_value.py") == 1
    out = capfd.readouterr().out
    # d tanh/dx = 1 - tanh² is what torch computes; the bug gives 1 - tanh
    line = next(x for x in out.splitlines() if "AssertionError: d(tanh(x))/dx at x=" in x)
    found = re.search(r"at x=(\S+): expected (\S+), got (\S+), off by (\S+),", line)
    assert found, line
    x, expected, got, off = (float(v) for v in found.groups())
    assert expected == pytest.approx(1 - math.tanh(x) ** 2, rel=1e-12)
    assert got == pytest.approx(1 - math.tanh(x), rel=1e-12)
    assert off == pytest.approx(abs(got - expected), rel=1e-2)
    assert "test-mine value: 6 passed, 1 failed, 0 skipped: FAILED (a subset: partial)" in out
    entry = json.loads((tmp_path / "mastery" / "progress.json").read_text())["concepts"]["value"]
    assert (entry["passed"], entry["failed"], entry["full"]) == (6, 1, False)


def test_the_layer1_message_helper_teaches():
    from tests.layer1.close import assert_close

    with pytest.raises(AssertionError) as err:
        assert_close(0.5, 0.4, "d(x*y)/dx at x=1.0")
    assert str(err.value) == (
        "d(x*y)/dx at x=1.0: expected 0.4, got 0.5, off by 0.1, 0.25 relative (tolerance 1e-10)"
    )
    assert_close(1.0, 1.0 + 1e-12, "tiny")
    with pytest.raises(AssertionError, match="expected nan"):
        assert_close(1.0, float("nan"), "nan")


def _exported(package: str) -> set[str]:
    """The names a package's __init__.py exports: its __all__ (read from the source)."""
    tree = ast.parse((REPO_ROOT / package.replace(".", "/") / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_layer1_tests_import_exported_names_from_the_package():
    """``from layer1_autograd.value import Value`` bypasses the public API: not in tests/layer1."""
    bypasses = []
    for path in sorted((REPO_ROOT / "tests" / "layer1").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").count("."):
                continue
            top = node.module.split(".")[0]
            if top.startswith("layer"):
                names = {a.name for a in node.names} & _exported(top)
                bypasses += [f"{path.name}:{node.lineno} {node.module}.{n}" for n in sorted(names)]
    assert bypasses == []
    assert "Value" in _exported("layer1_autograd")  # the check reads real exports
