"""The layer runner: ``python -m layerN_x`` and ``make layers``, one subprocess per deliverable.

Each deliverable runs in a child process (a crash or a memory peak of one never leaks into the
next) whose run folder the runner chooses and passes down (``--run-dir``), so that whatever
happens to the child, the runner knows which folder is its record: a child killed by a signal
(kill -9, the OOM killer) leaves a ``running`` manifest that the runner rewrites as ``failed``
("killed by signal 9 (SIGKILL)") and names in the table.

A deliverable whose newest finished run is ``ok`` at the same git commit and working-tree
changes, preset, seed, config (its hash) and requested device is skipped, "skipped (up to
date)", with the stored headline metrics and that run's folder, so an interrupted ``make
layers`` resumes where it stopped. ``--force`` (or ``FORCE=1``) reruns everything; deliverables
named on the command line always run.

SIGTERM or Ctrl-C stops the runner cleanly: the running child records ``interrupted``, the
runner prints one line and the table so far, and exits 128 + the signal (130, 143). The children
are top-level runs (no parent id) unless ``$DLSTACK_PARENT_RUN_ID`` says otherwise, which they
inherit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from layer0_math.deliverable import (
    PRESETS,
    DeliverableFn,
    deliverable_named,
    deliverables_of,
    resolve_config,
    run_deliverable,
    spec_of,
)
from layer0_math.runrecord import (
    FINAL_STATUSES,
    REPO_ROOT,
    SCHEMA_VERSION,
    InterruptGuard,
    check_device,
    close_dead_run,
    code_root,
    config_hash,
    dead_child,
    error_summary,
    git_state,
    interrupt_signum,
    new_run_dir,
    read_json,
    read_manifest,
    runs_root,
    signal_name,
)

GRACE_SECONDS = 20.0  # how long an interrupted child may take to record itself before kill -9
OWN_EXIT_SECONDS = 1.0  # a Ctrl-C at the terminal reaches the child too: let it stop on its own


@dataclass
class Outcome:
    """One row of the summary table."""

    layer: str
    name: str
    status: str
    seconds: float | None
    headline: dict[str, Any]
    where: str
    why: str = ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """The end-of-run table: deliverable | status | headline metrics | seconds | artifacts.

    Cells are never cut: paths are printed whole and a failure's reason is one line.
    """
    rows = [("deliverable", "status", "headline metrics", "seconds", "artifacts")]
    for o in outcomes:
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in o.headline.items())
        seconds = "-" if o.seconds is None else f"{o.seconds:.1f}"
        rows.append((f"{o.layer}/{o.name}", o.status, metrics or o.why, seconds, o.where))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _headline(fn: DeliverableFn, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = spec_of(fn).headline or tuple(metrics)[:3]
    return {k: metrics[k] for k in keys if k in metrics}


# ----------------------------------------------------------------------------- skipping


def _newest_finished(layer: str, name: str, runs_dir: Path | None) -> Path | None:
    """The newest run folder with a final status (a ``running`` one is not finished)."""
    base = Path(runs_dir or runs_root()) / layer / name
    for run in sorted(base.glob("[0-9]*"), reverse=True):
        man = read_manifest(run) if run.is_dir() else None
        if man is not None and man.get("status") in FINAL_STATUSES:
            return run
    return None


def up_to_date_run(
    layer: str, fn: DeliverableFn, args: argparse.Namespace, git: dict[str, Any]
) -> Path | None:
    """The run that makes rerunning ``fn`` pointless, or None (see the module docstring)."""
    if git.get("commit") is None:
        return None  # no git: nothing tells us the code is the same
    run = _newest_finished(layer, spec_of(fn).name, args.runs_dir)
    man = read_manifest(run) if run is not None else None
    if man is None or not (run / "metrics.json").exists():
        return None
    wanted = {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "kind": "deliverable",
        "preset": args.preset,
        "seed": args.seed,
        "config_hash": config_hash(resolve_config(fn, args.preset)),
        "requested_device": args.device,
        "git": git,
    }
    return run if all(man.get(k) == v for k, v in wanted.items()) else None


def _skipped(layer: str, fn: DeliverableFn, run: Path) -> Outcome:
    metrics = read_json(run / "metrics.json") or {}
    return Outcome(
        layer, spec_of(fn).name, "skipped (up to date)", None, _headline(fn, metrics), _shown(run)
    )


# ----------------------------------------------------------------------------- one child


def _child_command(layer: str, name: str, run: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "layer0_math.runner", "_one", layer, name, "--run-dir", str(run)]
    cmd += ["--preset", args.preset, "--seed", str(args.seed)]
    if args.device:
        cmd += ["--device", args.device]
    return cmd


def _stop_child(proc: subprocess.Popen, signum: int) -> None:
    """Pass an interrupt on to the child, give it time to record itself, then kill it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=OWN_EXIT_SECONDS)
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
    try:
        proc.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_child(proc: subprocess.Popen) -> KeyboardInterrupt | None:
    """Wait for the child; an interrupt of the runner stops it and is returned, not raised."""
    try:
        proc.wait()
    except KeyboardInterrupt as exc:
        _stop_child(proc, interrupt_signum(exc))
        return exc
    return None


def _outcome_of(
    layer: str, fn: DeliverableFn, run: Path, returncode: int, seconds: float
) -> Outcome:
    """Read back what the child recorded; record it ourselves when it could not."""
    name = spec_of(fn).name
    man = read_manifest(run)
    if man is not None and man.get("status") == "ok":
        metrics = read_json(run / "metrics.json") or {}
        return Outcome(layer, name, "ok", man.get("seconds"), _headline(fn, metrics), _shown(run))
    if man is None or man.get("status") not in FINAL_STATUSES:
        identity = {"layer": layer, "deliverable": name, "kind": "deliverable"}
        man = close_dead_run(run, *dead_child(returncode), seconds=seconds, identity=identity)
    status = {"interrupted": "INTERRUPTED", "stopped": "STOPPED"}.get(man["status"], "FAILED")
    where = run / "error.txt" if (run / "error.txt").exists() else run
    why = _one_line(man.get("error")) or dead_child(returncode)[1]
    return Outcome(layer, name, status, seconds, {}, _shown(where), why=why)


def _run_child(
    layer: str, fn: DeliverableFn, args: argparse.Namespace
) -> tuple[Outcome, KeyboardInterrupt | None]:
    """Run one deliverable in a subprocess, in a folder chosen here; read back its record."""
    run = new_run_dir(layer, spec_of(fn).name, args.runs_dir)
    t0 = time.perf_counter()
    # Output streams live (progress bars); the child's traceback goes to its error.txt.
    proc = subprocess.Popen(_child_command(layer, spec_of(fn).name, run, args))
    interrupt = _wait_child(proc)
    outcome = _outcome_of(layer, fn, run, proc.returncode, time.perf_counter() - t0)
    return outcome, interrupt


# ----------------------------------------------------------------------------- the layers


def _force_from_env() -> bool:
    return os.environ.get("FORCE", "").strip().lower() in ("1", "true", "yes")


def _device_arg(value: str) -> str:
    try:
        return check_device(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser(prog: str, names: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run deliverables; each writes runs/<layer>/<deliverable>/<time>/. "
        "Deliverables already run ok at this commit, preset, seed and config are skipped.",
    )
    p.add_argument(
        "names", nargs="*", help=f"deliverables to run, even if up to date (default: {names})"
    )
    p.add_argument("--preset", default="quick", choices=PRESETS, help="quick (default) or full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        type=_device_arg,
        default=None,
        help="cpu | cuda | cuda:N | mps (layers 3+; default: the best present)",
    )
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    p.add_argument(
        "--force", action="store_true", help="rerun up-to-date deliverables too (or FORCE=1)"
    )
    return p


def _chosen(module: ModuleType, names: Sequence[str]) -> list[DeliverableFn]:
    if not names:
        return deliverables_of(module)
    try:
        return [deliverable_named(module, n) for n in names]
    except ValueError as exc:
        raise SystemExit(f"{exc}") from None


def _layer_plan(layer: str, names: Sequence[str]) -> list[DeliverableFn] | Outcome:
    """The deliverables to run of ``layer``, or a FAILED row when they do not even load (the
    other layers still run)."""
    try:
        module = importlib.import_module(f"{layer}.deliverables")
        deliverables_of(module)
    except Exception as exc:
        why = f"its deliverables do not load: {error_summary(exc)}"
        return Outcome(layer, "deliverables", "FAILED", None, {}, _shown(code_root(layer)), why)
    return _chosen(module, names)


def _run_layer(
    layer: str, fns: Sequence[DeliverableFn], args: argparse.Namespace, outcomes: list[Outcome]
) -> None:
    force = args.force or bool(args.names) or _force_from_env()
    git = git_state(code_root(layer))
    for fn in fns:
        done = None if force else up_to_date_run(layer, fn, args, git)
        if done is not None:
            print(f"=== {layer}/{spec_of(fn).name}: skipped (up to date: {_shown(done)})")
            outcomes.append(_skipped(layer, fn, done))
            continue
        print(f"\n=== {layer}/{spec_of(fn).name} ({args.preset}) ===", flush=True)
        outcome, interrupt = _run_child(layer, fn, args)
        outcomes.append(outcome)
        if interrupt is not None:
            raise interrupt
        if outcome.status != "ok":
            print(f"!!! {layer}/{outcome.name} failed: {outcome.why}", flush=True)


def run_layers(
    layers: Sequence[str], args: argparse.Namespace, outcomes: list[Outcome] | None = None
) -> list[Outcome]:
    """Run (or skip) each deliverable of ``layers`` in order, appending to ``outcomes``.

    An interrupt stops the loop after the running child has been recorded and is re-raised.
    """
    outcomes = [] if outcomes is None else outcomes
    for layer in layers:
        plan = _layer_plan(layer, args.names)
        if isinstance(plan, Outcome):
            print(f"!!! {layer}: {plan.why}", flush=True)
            outcomes.append(plan)
            continue
        _run_layer(layer, plan, args, outcomes)
    return outcomes


def _run_and_report(layers: Sequence[str], args: argparse.Namespace) -> int:
    """Run the layers and print the table; exit status 0, 1 (a failure) or 128 + signal."""
    outcomes: list[Outcome] = []
    guard = InterruptGuard()
    with guard.installed():
        try:
            run_layers(layers, args, outcomes)
        except KeyboardInterrupt as exc:
            signum = interrupt_signum(exc)
            last = f" during {outcomes[-1].layer}/{outcomes[-1].name}" if outcomes else ""
            print(
                f"\ninterrupted by {signal_name(signum)}{last}; rerun to resume (finished "
                "deliverables are skipped)",
                file=sys.stderr,
                flush=True,
            )
            print("\n" + summary_table(outcomes), flush=True)
            return 128 + signum
    print("\n" + summary_table(outcomes), flush=True)
    return int(any(o.status in ("FAILED", "INTERRUPTED") for o in outcomes))


def cli(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python -m layerN_x``: run the layer's deliverables, print the table, exit 1 on failure."""
    layer = module.__name__.split(".")[0]
    names = [spec_of(fn).name for fn in deliverables_of(module)]
    args = _parser(f"python -m {layer}", names).parse_args(argv)
    return _run_and_report([layer], args)


def built_layers() -> list[str]:
    """Every layer package present in the repository, in order (``deliverables`` module or
    package)."""
    return sorted(
        p.name
        for p in REPO_ROOT.glob("layer[0-9]_*")
        if (p / "deliverables.py").exists() or (p / "deliverables" / "__init__.py").exists()
    )


# ----------------------------------------------------------------------------- entry points


def _record_early_failure(a: argparse.Namespace, exc: Exception) -> None:
    """A failure before the run opened (the deliverables would not import, an unknown name):
    its folder still gets the error and the traceback."""
    if not (a.run_dir / "error.txt").exists():
        (a.run_dir / "error.txt").write_text(traceback.format_exc())
    identity = {"layer": a.layer, "deliverable": a.name, "kind": "deliverable"}
    close_dead_run(a.run_dir, "failed", error_summary(exc), identity=identity)


def _one(argv: Sequence[str]) -> int:
    """The child: run one deliverable into the folder the runner chose."""
    p = argparse.ArgumentParser(prog="layer0_math.runner _one")
    p.add_argument("layer")
    p.add_argument("name")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--preset", default="quick", choices=PRESETS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=_device_arg, default=None)
    a = p.parse_args(argv)
    guard = InterruptGuard()
    with guard.installed():
        try:
            module = importlib.import_module(f"{a.layer}.deliverables")
            fn = deliverable_named(module, a.name)
            run_deliverable(fn, preset=a.preset, seed=a.seed, run_dir=a.run_dir, device=a.device)
        except KeyboardInterrupt as exc:  # recorded as interrupted; the runner says so
            guard.fired = guard.fired or interrupt_signum(exc)
            return 128 + interrupt_signum(exc)
        except Exception as exc:  # the traceback is in the run's error.txt; the user gets the why
            _record_early_failure(a, exc)
            print(f"\n{a.layer}/{a.name} failed:\n{error_summary(exc)}", file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m layer0_math.lab layers``: every built layer in order, one table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_one":
        return _one(argv[1:])
    if argv and argv[0] == "layers":
        args = _parser("python -m layer0_math.lab layers", []).parse_args(argv[1:])
        if args.names:
            raise SystemExit("`layers` runs every deliverable of every layer; name none")
        return _run_and_report(built_layers(), args)
    print(
        "usage: python -m layer0_math.lab layers [--preset quick|full] [--force]", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
