"""The run record: how every deliverable in every layer runs, and what it leaves behind.

A *deliverable* is a function ``fn(ctx: RunContext) -> dict`` decorated with :func:`deliverable`,
which gives it a config per preset (``quick``: minutes on a 2-core CPU; ``full``: the real run).
Running it writes one folder::

    runs/<layer>/<deliverable>/<timestamp>/
        manifest.json   what ran: preset, seed, config, git commit + dirty flag, versions, device,
                        start, seconds, peak memory (RSS, and CUDA when torch used a GPU), status
        metrics.json    the metrics the function returned
        *.png, *.safetensors (+ .json sidecar), ...   whatever it saved through the context
    runs/<layer>/<deliverable>/latest -> <timestamp>

``python -m layerN_x`` calls :func:`cli`, which runs each deliverable of the layer in its own
subprocess (so a crash or a memory peak of one never leaks into the next), then prints the
summary table: deliverable | status | headline metrics | seconds | artifacts. Models flow upward
as artifacts, never as imports: :func:`load_arrays` finds a lower layer's saved weights by
(layer, deliverable) and names the ``make layerN`` that produces them when they are missing.

Layers 0-2 never import torch; this module reads library versions through package metadata
and looks at CUDA memory only when the deliverable itself imported torch.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

PRESETS = ("quick", "full")
REPO_ROOT = Path(__file__).resolve().parent.parent

Metrics = dict[str, Any]
DeliverableFn = Callable[["RunContext"], Metrics]


class MissingArtifactError(FileNotFoundError):
    """A lower layer's artifact is not in ``runs/``; the message names the command that makes it."""


@dataclass(frozen=True)
class DeliverableSpec:
    """What :func:`deliverable` attaches to a function: name, preset configs, headline metrics."""

    name: str
    presets: dict[str, dict[str, Any]]
    headline: tuple[str, ...]


def deliverable(
    *,
    quick: dict[str, Any] | None = None,
    full: dict[str, Any] | None = None,
    headline: Sequence[str] = (),
) -> Callable[[DeliverableFn], DeliverableFn]:
    """Mark ``fn(ctx) -> metrics`` as a deliverable with one config per preset.

    ``full`` defaults to ``quick`` when not given; ``headline`` names the metrics the summary
    table shows (all metrics are written to ``metrics.json`` either way).
    """
    quick_cfg = dict(quick or {})
    full_cfg = dict(full if full is not None else quick_cfg)
    if set(quick_cfg) != set(full_cfg):
        raise ValueError(
            f"quick and full presets must have the same keys, got quick={sorted(quick_cfg)} "
            f"full={sorted(full_cfg)}"
        )

    def mark(fn: DeliverableFn) -> DeliverableFn:
        fn.__dlstack_deliverable__ = DeliverableSpec(  # type: ignore[attr-defined]
            name=fn.__name__,
            presets={"quick": quick_cfg, "full": full_cfg},
            headline=tuple(headline),
        )
        return fn

    return mark


def spec_of(fn: DeliverableFn) -> DeliverableSpec:
    spec = getattr(fn, "__dlstack_deliverable__", None)
    if spec is None:
        raise TypeError(f"{fn!r} is not a deliverable: decorate it with @deliverable(...)")
    return spec


def deliverables_of(module: ModuleType) -> list[DeliverableFn]:
    """The deliverables of a layer's ``deliverables`` module, in the order they are defined."""
    found = [v for v in vars(module).values() if hasattr(v, "__dlstack_deliverable__")]
    return sorted(found, key=lambda fn: fn.__code__.co_firstlineno)


@dataclass
class RunContext:
    """Everything a deliverable needs from the outside world, and where it writes."""

    layer: str
    deliverable: str
    preset: str
    seed: int
    config: dict[str, Any]
    out_dir: Path
    device: str | None = None
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(self.seed)

    def path(self, name: str) -> Path:
        """A file path inside this run's folder (sub-folders are created)."""
        p = self.out_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def progress(self, iterable: Iterable | None = None, **kwargs: Any) -> Any:
        """A tqdm progress bar (to stderr; quiet when DLSTACK_PROGRESS=0)."""
        from tqdm.auto import tqdm

        kwargs.setdefault("leave", False)
        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("disable", os.environ.get("DLSTACK_PROGRESS", "1") == "0")
        return tqdm(iterable, **kwargs)

    def savefig(self, fig: Any, name: str) -> Path:
        """The one plotting helper: save a matplotlib figure as PNG and close it."""
        plt = pyplot()
        p = self.path(name if name.endswith(".png") else name + ".png")
        fig.savefig(p, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return p

    def save_arrays(
        self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None
    ) -> Path:
        """Save named arrays as safetensors plus a JSON sidecar, atomically."""
        return save_arrays(self.path(name), arrays, meta)

    def write_text(self, name: str, text: str) -> Path:
        p = self.path(name)
        _atomic_write_bytes(p, text.encode("utf-8"))
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.path(name), obj)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend: every deliverable plots through this
    (figures go to files through :meth:`RunContext.savefig`, never to a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- files


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically (numpy scalars and arrays are converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2) + "\n").encode("utf-8"))
    return path


def save_arrays(
    path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None
) -> Path:
    """Atomically write ``arrays`` as safetensors at ``path`` and ``meta`` as ``<path>.json``."""
    from safetensors.numpy import save

    path = Path(path)
    contiguous = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    _atomic_write_bytes(path, save(contiguous))
    write_json(path.with_name(path.name + ".json"), meta or {})
    return path


def read_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what :func:`save_arrays` wrote: (arrays, meta)."""
    from safetensors.numpy import load_file

    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    return load_file(str(path)), meta


# ----------------------------------------------------------------------------- artifacts


def runs_root() -> Path:
    """Where runs are written: ``$DLSTACK_RUNS`` or ``<repo>/runs``."""
    return Path(os.environ.get("DLSTACK_RUNS", REPO_ROOT / "runs"))


def _make_target(layer: str) -> str:
    return "make " + layer.split("_", 1)[0]


def latest_run_dir(layer: str, deliverable_name: str, runs_dir: Path | None = None) -> Path:
    """The newest successful run folder of (layer, deliverable)."""
    base = Path(runs_dir or runs_root()) / layer / deliverable_name
    candidates = sorted(
        (p for p in base.glob("[0-9]*") if (p / "metrics.json").exists()), reverse=True
    )
    if not candidates:
        raise MissingArtifactError(
            f"no finished run of {layer}/{deliverable_name} under {base}; "
            f"run `{_make_target(layer)}` (or `python -m {layer} {deliverable_name}`) first"
        )
    return candidates[0]


def load_arrays(
    layer: str, deliverable_name: str, name: str, runs_dir: Path | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a lower layer's saved arrays by (layer, deliverable, file name)."""
    run = latest_run_dir(layer, deliverable_name, runs_dir)
    path = run / name
    if not path.exists():
        raise MissingArtifactError(
            f"{path} does not exist (the run has: {sorted(p.name for p in run.iterdir())}); "
            f"rerun `{_make_target(layer)}`"
        )
    return read_arrays(path)


# ----------------------------------------------------------------------------- manifest


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "scipy", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _peak_memory() -> dict[str, float | None]:
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        cuda = torch.cuda.max_memory_allocated() / 2**20
    return {"rss_mib": rss_kib / 1024, "cuda_mib": cuda}


def _device_used(requested: str | None) -> str:
    torch = sys.modules.get("torch")
    if torch is None:
        return "cpu (numpy)"
    if requested:
        return requested
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def error_summary(exc: BaseException) -> str:
    """One line for a table: the exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def manifest(
    ctx: RunContext, *, start: float, seconds: float, status: str, error: str | None = None
) -> dict[str, Any]:
    """The manifest of a run (see the module docstring)."""
    return {
        "layer": ctx.layer,
        "deliverable": ctx.deliverable,
        "preset": ctx.preset,
        "seed": ctx.seed,
        "config": ctx.config,
        "status": status,
        "error": error,
        "git": _git_state(),
        "versions": _versions(),
        "device": _device_used(ctx.device),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "start": dt.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "peak_memory": _peak_memory(),
    }


def seed_everything_numpy(seed: int) -> None:
    """Seed Python's and numpy's global generators (torch is seeded in layer 3)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global state, seeded for old code paths)


def blas_thread_limit(threads: int | None) -> contextlib.AbstractContextManager:
    """Limit numpy's BLAS to ``threads`` threads while a block runs (None or 0: no limit).

    A deliverable opts in with a ``blas_threads`` config key. The scratch layers' matrices are
    small to mid-sized: a second BLAS thread gains little on an idle 2-core machine, and on a
    busy one every product waits at a barrier for a parked thread (measured here: up to 25x
    slower than one thread).
    """
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def _new_run_dir(layer: str, name: str, runs_dir: Path | None) -> Path:
    base = Path(runs_dir or runs_root()) / layer / name
    base.mkdir(parents=True, exist_ok=True)
    while True:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run = base / stamp
        try:
            run.mkdir()
            return run
        except FileExistsError:
            time.sleep(0.001)


def _point_latest(run: Path) -> None:
    link = run.parent / "latest"
    tmp = run.parent / f".latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, link)


def resolve_config(
    fn: DeliverableFn, preset: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preset's config with overrides applied; unknown presets or keys are errors."""
    spec = spec_of(fn)
    if preset not in spec.presets:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(spec.presets)}")
    config = dict(spec.presets[preset])
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(
                f"unknown config key {key!r} for {spec.name}; expected one of {sorted(config)}"
            )
        config[key] = value
    return config


def run_deliverable(
    fn: DeliverableFn,
    *,
    preset: str = "quick",
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    runs_dir: Path | None = None,
    device: str | None = None,
) -> Metrics:
    """Run one deliverable in this process and write its run folder; return its metrics.

    On an exception the manifest is written with ``status: failed`` and ``error.txt`` holds the
    traceback, then the exception propagates.
    """
    spec = spec_of(fn)
    layer = fn.__module__.split(".")[0]
    config = resolve_config(fn, preset, overrides)
    run = _new_run_dir(layer, spec.name, runs_dir)
    ctx = RunContext(layer, spec.name, preset, seed, config, run, device)
    seed_everything_numpy(seed)
    start, t0 = time.time(), time.perf_counter()
    try:
        with blas_thread_limit(config.get("blas_threads")):
            metrics = fn(ctx)
        if not isinstance(metrics, dict):
            raise TypeError(
                f"deliverable {spec.name} returned {type(metrics).__name__}, not a dict"
            )
    except BaseException as exc:
        (run / "error.txt").write_text(traceback.format_exc())
        seconds = time.perf_counter() - t0
        write_json(
            run / "manifest.json",
            manifest(ctx, start=start, seconds=seconds, status="failed", error=error_summary(exc)),
        )
        raise
    seconds = time.perf_counter() - t0
    write_json(run / "metrics.json", metrics)
    write_json(run / "manifest.json", manifest(ctx, start=start, seconds=seconds, status="ok"))
    _point_latest(run)
    return metrics


# ----------------------------------------------------------------------------- the layer CLI


@dataclass
class Outcome:
    layer: str
    name: str
    status: str
    seconds: float
    headline: dict[str, Any]
    where: str
    why: str = ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary_table(outcomes: Sequence[Outcome]) -> str:
    """The end-of-run table: deliverable | status | headline metrics | seconds | artifacts."""
    rows = [("deliverable", "status", "headline metrics", "seconds", "artifacts")]
    for o in outcomes:
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in o.headline.items())
        rows.append(
            (f"{o.layer}/{o.name}", o.status, metrics or o.why, f"{o.seconds:.1f}", o.where)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run_child(layer: str, name: str, args: argparse.Namespace) -> Outcome:
    """Run one deliverable in a subprocess and read back what it recorded."""
    cmd = [
        sys.executable,
        "-m",
        "layer0_math.lab",
        "_one",
        layer,
        name,
        "--preset",
        args.preset,
        "--seed",
        str(args.seed),
    ]
    if args.device:
        cmd += ["--device", args.device]
    if args.runs_dir:
        cmd += ["--runs-dir", str(args.runs_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)  # output streams live: progress bars, and the traceback on failure
    seconds = time.perf_counter() - t0
    base = Path(args.runs_dir or runs_root()) / layer / name
    if proc.returncode == 0:
        run = latest_run_dir(layer, name, args.runs_dir)
        metrics = json.loads((run / "metrics.json").read_text())
        man = json.loads((run / "manifest.json").read_text())
        spec = spec_of(getattr(importlib.import_module(f"{layer}.deliverables"), name))
        keys = spec.headline or tuple(metrics)[:3]
        head = {k: metrics[k] for k in keys if k in metrics}
        return Outcome(layer, name, "ok", man["seconds"], head, _shown(run))
    failed = sorted(base.glob("*/error.txt"), key=lambda p: p.stat().st_mtime)
    if not failed:
        return Outcome(
            layer, name, "FAILED", seconds, {}, _shown(base), why=f"exit status {proc.returncode}"
        )
    man = json.loads((failed[-1].parent / "manifest.json").read_text())
    why = man.get("error") or f"exit status {proc.returncode}"
    return Outcome(layer, name, "FAILED", seconds, {}, _shown(failed[-1]), why=why[:160])


def _parser(prog: str, names: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run deliverables; each writes runs/<layer>/<deliverable>/<time>/.",
    )
    p.add_argument("names", nargs="*", help=f"deliverables to run (default: all of {list(names)})")
    p.add_argument("--preset", default="quick", choices=PRESETS, help="quick (default) or full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda | mps | cpu (layers 3+; default: best)")
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    return p


def run_layers(layers: Sequence[str], args: argparse.Namespace) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for layer in layers:
        module = importlib.import_module(f"{layer}.deliverables")
        names = [spec_of(fn).name for fn in deliverables_of(module)]
        chosen = args.names or names
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise SystemExit(
                f"unknown deliverable(s) {unknown} in {layer}; expected some of {names}"
            )
        for name in chosen:
            print(f"\n=== {layer}/{name} ({args.preset}) ===", flush=True)
            outcome = _run_child(layer, name, args)
            if outcome.status != "ok":
                print(f"!!! {layer}/{name} failed: {outcome.why}", flush=True)
            outcomes.append(outcome)
    return outcomes


def cli(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python -m layerN_x``: run the layer's deliverables, print the table, exit 1 on failure."""
    layer = module.__name__.split(".")[0]
    names = [spec_of(fn).name for fn in deliverables_of(module)]
    args = _parser(f"python -m {layer}", names).parse_args(argv)
    outcomes = run_layers([layer], args)
    print("\n" + summary_table(outcomes))
    return int(any(o.status != "ok" for o in outcomes))


def built_layers() -> list[str]:
    """Every layer package present in the repository, in order."""
    return sorted(
        p.name for p in REPO_ROOT.glob("layer[0-9]_*") if (p / "deliverables.py").exists()
    )


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_one":
        p = argparse.ArgumentParser(prog="layer0_math.lab _one")
        p.add_argument("layer")
        p.add_argument("name")
        p.add_argument("--preset", default="quick", choices=PRESETS)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default=None)
        p.add_argument("--runs-dir", type=Path, default=None)
        a = p.parse_args(argv[1:])
        fn = getattr(importlib.import_module(f"{a.layer}.deliverables"), a.name)
        try:
            run_deliverable(fn, preset=a.preset, seed=a.seed, runs_dir=a.runs_dir, device=a.device)
        except Exception as exc:  # the traceback is in the run's error.txt; the user gets the why
            print(f"\n{a.layer}/{a.name} failed:\n{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        return 0
    if argv and argv[0] == "layers":
        args = _parser("python -m layer0_math.lab layers", []).parse_args(argv[1:])
        if args.names:
            raise SystemExit("`layers` runs every deliverable of every layer; name none")
        outcomes = run_layers(built_layers(), args)
        print("\n" + summary_table(outcomes))
        return int(any(o.status != "ok" for o in outcomes))
    print("usage: python -m layer0_math.lab layers [--preset quick|full]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main())
