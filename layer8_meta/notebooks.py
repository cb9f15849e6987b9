"""The notebooks: one per layer, each walking through that layer's key idea with its real code.

A notebook is kept as a jupytext *percent* file, ``notebooks/layerN_x.py``: plain Python in which
``# %%`` opens a code cell and ``# %% [markdown]`` a markdown cell (its lines are ``#`` comments).
That file is the source of truth: it diffs, reviews and lints like code. The ``.ipynb`` is made
from it and never committed::

    python -m layer8_meta notebooks list            # the notebooks and their layers
    python -m layer8_meta notebooks sync [NAMES]    # .py -> .ipynb beside it (to open in Jupyter)
    python -m layer8_meta notebooks run [NAMES]     # execute; copies in <runs>/notebooks/

``run`` executes each notebook with nbclient in a fresh ``python3`` kernel of this virtual
environment (ipykernel's kernel; :func:`kernel_python` says which interpreter it starts), in a
temporary folder that is also the kernel's ``DLSTACK_RUNS``: a notebook never writes into the
repository or into the learner's ``runs/``. The executed copy, outputs and plots included, is
written atomically to ``<runs>/notebooks/<name>.ipynb``; the source is only ever read. A cell
that raises fails the run with the notebook, the cell's number and the exception named.

Every notebook reads ``SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"`` in its first
code cell and shrinks its steps and data when set (``run --small``; the tests set it), so all of
them execute in ``make test`` and none rots.

``sync`` never overwrites work: a ``.ipynb`` whose cells differ from its ``.py`` and that is
newer than it (edited in Jupyter without jupytext's pairing) is refused, naming both files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from traitlets.config import Config

from layer0_math.files import atomic_write_bytes
from layer0_math.lab import REPO_ROOT, runs_root

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
KERNEL = "python3"
SMALL_ENV = "DLSTACK_NOTEBOOK_SMALL"
QUIET = "ignore:IProgress not found"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3 (dlstack)", "language": "python"}


class NotebookError(RuntimeError):
    """A notebook that could not be executed: which one, which cell, what it raised."""

    def __init__(self, notebook: Path, cell: int | None, message: str) -> None:
        where = f"{notebook.name}, cell {cell}" if cell is not None else notebook.name
        super().__init__(f"notebook {where}: {message}")
        self.notebook, self.cell = notebook, cell


@dataclass(frozen=True)
class Executed:
    """One executed notebook: its source, the executed copy, wall seconds (kernel included)."""

    source: Path
    output: Path
    seconds: float


# ----------------------------------------------------------------------------- finding them


def sources(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Every notebook source (``layer*.py``) in ``folder``, in layer order."""
    return sorted(folder.glob("layer[0-9]_*.py"))


def select(names: Sequence[str], folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``names`` asks for (all when empty): a name is a file stem
    (``layer4_architectures``), its layer prefix (``layer4``) or a path to a ``.py`` file."""
    found = sources(folder)
    if not names:
        return found
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".py" and path.is_file():
            chosen.append(path)
            continue
        matches = [p for p in found if p.stem == name or p.stem.split("_")[0] == name]
        if not matches:
            known = ", ".join(p.stem for p in found) or f"none in {folder}"
            raise ValueError(f"unknown notebook {name!r}: expected one of {known}")
        chosen.extend(matches)
    return chosen


def read(path: Path) -> NotebookNode:
    """A percent-format source as a notebook, with this project's kernel in its metadata."""
    if not path.is_file():
        raise ValueError(f"notebook source {path} does not exist")
    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def _inputs(nb: NotebookNode) -> list[tuple[str, str]]:
    """The cells as (type, source): what pairing must preserve (outputs are not compared)."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


# ----------------------------------------------------------------------------- sync


def sync(paths: Sequence[Path]) -> list[Path]:
    """Write ``x.ipynb`` beside each ``x.py`` (atomically); return the paths written."""
    written = []
    for src in paths:
        nb = read(src)
        target = src.with_suffix(".ipynb")
        if target.exists():
            old = nbformat.read(target, as_version=4)
            if _inputs(old) == _inputs(nb):
                continue
            if target.stat().st_mtime > src.stat().st_mtime:
                raise ValueError(
                    f"{target} was edited after {src.name} and their cells differ: copy your "
                    f"changes into {src.name} (jupytext --sync {target.name}) or remove {target}"
                )
        atomic_write_bytes(target, jupytext.writes(nb, fmt="ipynb").encode())
        written.append(target)
    return written


# ----------------------------------------------------------------------------- run


def kernel_python() -> str:
    """The interpreter the ``python3`` kernel starts (jupyter_client maps the kernelspec's bare
    ``python`` to ``sys.executable``, so it is this virtual environment's when run from it)."""
    return KernelManager(kernel_name=KERNEL).format_kernel_cmd()[0]


def _failed_cell(nb: NotebookNode) -> tuple[int | None, str]:
    """The first cell with an error output: its number (1-based, as Jupyter counts every
    cell) and ``ExceptionName: message``."""
    for i, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, f"{out.get('ename')}: {out.get('evalue')}"
    return None, "the kernel failed"


def _ipc(work: Path) -> Config:
    """Kernel sockets as files in ``work`` (IPC), not TCP ports: none to collide, nothing sent
    unencrypted; the path is absolute because the kernel runs with ``work`` as its cwd."""
    return Config({"KernelManager": {"transport": "ipc", "ip": str(work / "kernel")}})


def _write(nb: NotebookNode, path: Path) -> None:
    atomic_write_bytes(path, nbformat.writes(nb).encode())


def execute(src: Path, out_dir: Path, small: bool = False, timeout: int = 600) -> Executed:
    """Run ``src`` top to bottom in a fresh kernel; write the executed copy to
    ``out_dir/<name>.ipynb`` (also when a cell fails, to show the traceback)."""
    nb = read(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{src.stem}.ipynb"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"dlstack-nb-{src.stem}-") as work:
        env = dict(os.environ)
        env.update(DLSTACK_RUNS=str(Path(work) / "runs"), DLSTACK_PROGRESS="0")
        # tqdm.auto's "IProgress not found" (no ipywidgets): progress bars are off anyway
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET]))
        env[SMALL_ENV] = "1" if small else env.get(SMALL_ENV, "0")
        client = NotebookClient(
            nb,
            config=_ipc(Path(work)),
            timeout=timeout,
            kernel_name=KERNEL,
            resources={"metadata": {"path": work}},
        )
        try:
            client.execute(env=env, cwd=work)
        except CellExecutionError:
            _write(nb, output)
            cell, message = _failed_cell(nb)
            raise NotebookError(src, cell, f"{message} (executed copy: {output})") from None
        except (TimeoutError, RuntimeError) as exc:  # a cell past the timeout; a dead kernel
            _write(nb, output)
            raise NotebookError(src, None, f"{type(exc).__name__}: {exc}") from None
    _write(nb, output)
    return Executed(src, output, time.perf_counter() - start)


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m layer8_meta notebooks",
        description="One notebook per layer: jupytext .py sources, paired .ipynb, executed copies.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the notebooks, in layer order")
    s = sub.add_parser("sync", help="write the .ipynb beside each .py source")
    s.add_argument("names", nargs="*", help="layerN, a stem, or a .py path (default: all)")
    r = sub.add_parser("run", help="execute notebooks; copies go to <runs>/notebooks/")
    r.add_argument("names", nargs="*", help="layerN, a stem, or a .py path (default: all)")
    r.add_argument("--small", action="store_true", help=f"small settings ({SMALL_ENV}=1)")
    r.add_argument("--out", type=Path, help="folder for executed copies (<runs>/notebooks)")
    r.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    return p


def _run(a: argparse.Namespace, paths: list[Path]) -> int:
    out_dir = a.out or runs_root() / "notebooks"
    print(f"kernel {KERNEL}: {kernel_python()}")
    total = 0.0
    for src in paths:
        try:
            done = execute(src, out_dir, small=a.small, timeout=a.timeout)
        except NotebookError as exc:
            print(f"error: {exc}")
            return 1
        total += done.seconds
        print(f"{src.stem:<22} ok {done.seconds:6.1f} s  -> {done.output}")
    print(f"{len(paths)} notebook(s) executed in {total:.1f} s; copies in {out_dir}")
    return 0


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    try:
        paths = select(getattr(a, "names", []))
        if a.action == "list":
            for src in paths:
                shown = src.relative_to(REPO_ROOT) if src.is_relative_to(REPO_ROOT) else src
                print(f"{src.stem:<22} {shown}")
            return 0
        if a.action == "sync":
            written = sync(paths)
            for path in written:
                print(f"wrote {path}")
            fresh = len(paths) - len(written)
            print(f"{len(written)} of {len(paths)} notebook(s) written ({fresh} up to date)")
            return 0
        if a.timeout < 1:
            raise ValueError(f"--timeout must be >= 1 second, got {a.timeout}")
        return _run(a, paths)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
