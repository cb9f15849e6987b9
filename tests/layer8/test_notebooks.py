"""The notebooks: one per layer, each pairs with its .ipynb exactly, each executes on small
settings without an error (outputs to tmp, never into the repository), and a cell that raises
fails the run naming the notebook and the cell."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from layer0_math.lab import built_layers
from layer8_meta import notebooks
from layer8_meta.notebooks import NOTEBOOKS_DIR, NotebookError, execute, select, sources, sync

NAMES = [p.stem for p in sources()]
NEEDS_DATA = {"layer3_framework", "layer4_architectures"}  # MNIST, tiny shakespeare


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _planted(tmp_path: Path) -> Path:
    """A notebook whose cells report where the kernel runs, then one that raises."""
    src = tmp_path / "layer9_planted.py"
    src.write_text(
        "# %% [markdown]\n# A planted notebook.\n\n"
        "# %%\nimport os, sys\n"
        "print('CWD', os.getcwd())\nprint('RUNS', os.environ['DLSTACK_RUNS'])\n"
        "print('PY', sys.executable)\nprint('SMALL', os.environ.get('DLSTACK_NOTEBOOK_SMALL'))\n\n"
        "# %%\nvalues = [1, 2]\n\n"
        "# %%\nvalues[0] / (values[1] - 2)\n\n"
        "# %%\nprint('never reached')\n"
    )
    return src


def _stream(nb: nbformat.NotebookNode) -> dict[str, str]:
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def test_every_layer_has_its_notebook():
    layers = set(built_layers()) | {"layer8_meta"}
    assert set(NAMES) == layers, f"missing {layers - set(NAMES)}, stray {set(NAMES) - layers}"


@pytest.mark.parametrize("name", NAMES)
def test_the_source_pairs_with_its_ipynb_and_reads_the_small_flag(name, tmp_path):
    src = tmp_path / f"{name}.py"
    src.write_bytes((NOTEBOOKS_DIR / f"{name}.py").read_bytes())
    assert sync([src]) == [src.with_suffix(".ipynb")]
    from_py = jupytext.read(src)
    from_ipynb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    assert [(c.cell_type, c.source) for c in from_ipynb.cells] == [
        (c.cell_type, c.source) for c in from_py.cells
    ]
    assert jupytext.writes(from_ipynb, fmt="py:percent") == src.read_text()  # text round trip
    first_code = next(c.source for c in from_py.cells if c.cell_type == "code")
    assert 'SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"' in first_code
    assert from_py.cells[0].cell_type == "markdown" and from_py.cells[0].source.startswith("# ")
    assert sync([src]) == []  # up to date: nothing rewritten


def test_sync_never_overwrites_an_ipynb_edited_after_its_source(tmp_path):
    src = tmp_path / "layer9_x.py"
    src.write_text("# %%\nx = 1\n")
    (target,) = sync([src])
    nb = nbformat.read(target, as_version=4)
    nb.cells[0].source = "x = 2  # the learner's edit in Jupyter"
    nbformat.write(nb, target)
    edited = target.read_bytes()
    with pytest.raises(ValueError, match=r"layer9_x\.ipynb was edited after layer9_x\.py"):
        sync([src])
    assert target.read_bytes() == edited
    src.write_text("# %%\nx = 3\n")  # the source edited last wins
    assert sync([src]) == [target]
    assert nbformat.read(target, as_version=4).cells[0].source == "x = 3"


def test_select_by_layer_prefix_and_unknown_names():
    assert [p.stem for p in select(["layer4", "layer0_math"])] == [
        "layer4_architectures",
        "layer0_math",
    ]
    with pytest.raises(ValueError, match=r"unknown notebook 'layer9'.*layer0_math"):
        select(["layer9"])


def test_cli_bad_input_is_one_error_line_and_exit_2(capsys):
    assert notebooks.main(["run", "nosuch"]) == 2
    assert capsys.readouterr().out.strip().startswith("error: unknown notebook 'nosuch'")
    assert notebooks.main(["run", "layer0", "--timeout", "0"]) == 2
    assert "--timeout must be >= 1" in capsys.readouterr().out


def test_the_kernel_is_this_environment():
    assert notebooks.kernel_python() == sys.executable


@pytest.mark.slow
def test_a_raising_cell_fails_the_run_naming_notebook_and_cell(tmp_path, capsys):
    src = _planted(tmp_path)
    before = src.read_bytes()
    out = tmp_path / "out"
    assert notebooks.main(["run", str(src), "--small", "--out", str(out)]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("error: notebook layer9_planted.py, cell 4: ZeroDivisionError")
    with pytest.raises(NotebookError) as e:
        execute(src, out, small=True)
    assert e.value.cell == 4 and "division by zero" in str(e.value)
    # the executed copy shows what ran; the source is untouched
    copy = nbformat.read(out / "layer9_planted.ipynb", as_version=4)
    seen = _stream(copy)
    assert seen["PY"] == sys.executable and seen["SMALL"] == "1"
    assert Path(seen["RUNS"]).parent == Path(seen["CWD"])  # DLSTACK_RUNS inside the tmp cwd
    assert not Path(seen["CWD"]).is_relative_to(notebooks.REPO_ROOT)
    assert not Path(seen["CWD"]).exists()  # the work folder is removed afterwards
    assert copy.cells[4].outputs == [] and src.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.data) if n in NEEDS_DATA else n for n in NAMES]
)
def test_notebook_executes_on_small_settings(name, tmp_path):
    repo_before = _digest(NOTEBOOKS_DIR)
    done = execute(NOTEBOOKS_DIR / f"{name}.py", tmp_path / "out", small=True)
    nb = nbformat.read(done.output, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook's plot"
    assert _digest(NOTEBOOKS_DIR) == repo_before  # nothing written into the repository
    print(f"{name}: {done.seconds:.1f} s")
