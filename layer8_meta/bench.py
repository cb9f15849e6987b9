"""``python -m layer8_meta bench [names...]``: the benchmarks, each recorded as a run.

Every ``benchmarks/<name>.py`` prints a table and, as its last line, one JSON object of figures
(mostly ratios ours / reference time: lower is better). Run here, each one becomes a run like a
deliverable's::

    runs/benchmarks/<name>/<timestamp>/
        manifest.json   kind "benchmark", the script and its arguments as the config, the commit,
                        the host (a benchmark's figures mean little without the CPU that made them)
        output.txt      the script's stdout, as printed (stderr.txt: its stderr, when any)
        metrics.json    the last line's JSON, nested objects flattened to dotted names
                        (``adamw.ours_ms``)

so the ratios are in the registry (``runs --kind benchmark``, their history in the report) and
in ``regress``. A benchmark that exits non-zero, or whose last line is not a JSON object, is a
``failed`` run whose error says which.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from layer0_math.lab import REPO_ROOT, RunContext, open_run
from layer8_meta.registry import flatten
from layer8_meta.registry.cli import Parser, fmt

BENCH_LAYER = "benchmarks"


class BenchmarkError(RuntimeError):
    """A benchmark that failed or printed no JSON last line; the message says which, ``run``
    is the folder that recorded it."""

    run: Path | None = None


def benchmark_scripts(folder: Path) -> dict[str, Path]:
    """name -> script of every ``*.py`` in ``folder`` (none starting with ``_``)."""
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def last_json(stdout: str, script: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of ``stdout``, flattened."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else ""
    try:
        figures = json.loads(last)
    except ValueError:
        figures = None
    if not isinstance(figures, dict):
        shown = last if len(last) <= 120 else last[:117] + "..."
        raise BenchmarkError(f"{script}'s last line is not a JSON object: {shown!r}")
    return flatten(figures)


def _run_script(script: Path, args: list[str]) -> tuple[str, str, int]:
    """Run it, echoing its stdout line by line as it comes; (stdout, stderr, exit status)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        lines = []
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                print(line, end="", flush=True)
                lines.append(line)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: the benchmark stops with us
                proc.kill()
                proc.wait()
        err.seek(0)
        return "".join(lines), err.read(), code


def run_benchmark(
    script: Path, args: list[str] | None = None, runs_dir: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Run one benchmark inside a run record; (its folder, its figures). A failure is recorded
    in the run and raised as :class:`BenchmarkError`."""
    args = list(args or [])
    shown = str(script.relative_to(REPO_ROOT)) if script.is_relative_to(REPO_ROOT) else str(script)
    config = {"script": shown, "args": args}
    with open_run(
        BENCH_LAYER,
        script.stem,
        preset="default",
        seed=0,
        config=config,
        runs_dir=runs_dir,
        kind="benchmark",
    ) as ctx:
        try:
            figures = _recorded(ctx, script, args, shown)
        except BenchmarkError as exc:
            exc.run = ctx.out_dir
            raise
    return ctx.out_dir, figures


def _recorded(ctx: RunContext, script: Path, args: list[str], shown: str) -> dict[str, Any]:
    stdout, stderr, code = _run_script(script, args)
    ctx.write_text("output.txt", stdout)
    if stderr.strip():
        ctx.write_text("stderr.txt", stderr)
        print(stderr, end="", file=sys.stderr)
    if code != 0:
        tail = (stderr.strip().splitlines() or ["no stderr"])[-1]
        raise BenchmarkError(f"{shown} exited with status {code}: {tail}")
    figures = last_json(stdout, shown)
    ctx.record_metrics(figures)
    return figures


def main(argv: list[str]) -> int:
    p = Parser(
        prog="python -m layer8_meta bench",
        description="Run benchmarks/*.py, each as a recorded run (kind benchmark) whose metrics "
        "are the figures of its last JSON line.",
    )
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument(
        "--dir", type=Path, default=REPO_ROOT / "benchmarks", help="default: benchmarks/"
    )
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    a = p.parse_args(argv)
    scripts = benchmark_scripts(a.dir)
    unknown = [n for n in a.names if n not in scripts]
    if unknown or not scripts:
        print(
            f"error: unknown benchmark(s) {unknown} in {a.dir}; expected some of {sorted(scripts)}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in a.names or list(scripts):
        print(f"== benchmark {name}", flush=True)
        try:
            run, figures = run_benchmark(scripts[name], runs_dir=a.runs_dir)
        except BenchmarkError as exc:
            print(f"benchmark {name} FAILED: {exc}\n  recorded in {exc.run}")
            failed += 1
            continue
        numbers = ", ".join(f"{k}={fmt(v)}" for k, v in figures.items())
        print(f"benchmark {name}: {numbers}\n  recorded in {run}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
