"""The run record: one way to open a run, and a manifest whose status is always true.

Every run (a deliverable, a Hydra training run, a multirun trial, later a distributed rank or a
reproduction) is opened with :func:`open_run`, which writes ``manifest.json`` into the run's
folder before anything else happens and rewrites it when the run ends::

    running --(clean exit)------------------------------> ok           (+ the ``latest`` link)
            --(exception, incl. a full disk)------------> failed       (+ error, error.txt)
            --(Ctrl-C, SIGTERM)-------------------------> interrupted  (+ error)
            --(RunStopped: ended on purpose, e.g. pruned)-> stopped      (+ error: the reason)
            --(kill -9: the process cannot say so)------> failed, written by the parent
                                                           that chose the folder

The manifest names what ran (``schema_version``, ``run_id``, ``parent_id``, ``kind``, layer,
deliverable, preset, seed, config and its ``config_hash``), where (git commit, dirty flag and a
hash of the uncommitted changes; library versions; device; host CPU model and bf16 support),
when (start, seconds) and at what cost (peak RSS, peak CUDA memory when torch used a GPU).

Every file is written atomically (a ``.name.tmp-PID`` file, then a rename); a write that fails
removes its temporary file, and no reader ever looks at one (:func:`is_partial`). A run folder
counts as finished only when its manifest says ``ok``.

Layers 0-2 never import torch; library versions come from package metadata and CUDA memory is
read only when the run itself imported torch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import numpy as np

from layer0_math.files import TMP_MARK, atomic_write_bytes, is_partial

SCHEMA_VERSION = 1  # manifests written before this field existed count as version 0
REPO_ROOT = Path(__file__).resolve().parent.parent
FINAL_STATUSES = ("ok", "failed", "interrupted", "stopped")  # after "running"
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX-512, AMX); aarch64's "bf16" feature
UNTRACKED_HASH_LIMIT = 64 * 2**20  # bytes of an untracked file hashed by content


class MissingArtifactError(FileNotFoundError):
    """A lower layer's artifact is not in ``runs/``; the message names the command that makes it."""


class RunStopped(Exception):  # noqa: N818 (a stop, not an error)
    """Ends a run on purpose before its planned end (a tuner pruned a trial, an early-stopping
    rule fired): the run is recorded ``stopped`` with this message and no traceback, then the
    exception propagates to whoever asked for the stop. Subclass it beside a library's own
    exception (e.g. ``optuna.TrialPruned``) so both sides read the stop correctly."""


class RunInterrupted(KeyboardInterrupt):
    """Raised in the main thread by a SIGTERM (or SIGINT) while a run is open.

    A KeyboardInterrupt, so code that already cleans up after Ctrl-C does the same for SIGTERM and
    ``except Exception`` never swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def interrupt_signum(exc: BaseException) -> int:
    """The signal behind an interrupt: SIGTERM for :class:`RunInterrupted`, else SIGINT."""
    return getattr(exc, "signum", signal.SIGINT)


# ----------------------------------------------------------------------------- files


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)  # one name to patch in the fault tests


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left under ``folder``."""
    removed = [p for p in Path(folder).rglob(f".*{TMP_MARK}*") if p.is_file()]
    for p in removed:
        with contextlib.suppress(OSError):
            p.unlink()
    return removed


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


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(_jsonable(obj), indent=2) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any) -> Path:
    """Write JSON atomically (numpy scalars and arrays are converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, _json_bytes(obj))
    return path


def read_json(path: Path) -> Any:
    """The JSON at ``path``, or None when it is missing or unreadable (a record, not a crash)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


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


# ----------------------------------------------------------------------------- run folders


def runs_root() -> Path:
    """Where runs are written: ``$DLSTACK_RUNS`` or ``<repo>/runs``."""
    return Path(os.environ.get("DLSTACK_RUNS", REPO_ROOT / "runs"))


def new_run_dir(layer: str, name: str, runs_dir: Path | None = None) -> Path:
    """Create and return a fresh ``<runs>/<layer>/<name>/<timestamp>/`` folder."""
    base = Path(runs_dir or runs_root()) / layer / name
    base.mkdir(parents=True, exist_ok=True)
    while True:
        run = base / dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            time.sleep(0.001)


def _point_latest(run: Path) -> None:
    link = run.parent / "latest"
    tmp = run.parent / f".latest{TMP_MARK}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, link)


def read_manifest(run: Path) -> dict[str, Any] | None:
    man = read_json(Path(run) / "manifest.json")
    return man if isinstance(man, dict) else None


def _make_target(layer: str) -> str:
    return "make " + layer.split("_", 1)[0]


def latest_run_dir(layer: str, deliverable_name: str, runs_dir: Path | None = None) -> Path:
    """The newest finished run folder of (layer, deliverable): its manifest says ``ok``."""
    base = Path(runs_dir or runs_root()) / layer / deliverable_name
    for run in sorted(base.glob("[0-9]*"), reverse=True):
        man = read_manifest(run) if run.is_dir() else None
        if man is not None and man.get("status") == "ok":
            return run
    raise MissingArtifactError(
        f"no finished run of {layer}/{deliverable_name} under {base}; "
        f"run `{_make_target(layer)}` (or `python -m {layer} {deliverable_name}`) first"
    )


def checkpoint_dir(
    layer: str, deliverable_name: str, folders: tuple[str, ...], runs_dir: Path | None = None
) -> Path:
    """The sub-run folder holding ``checkpoints/`` of (layer, deliverable)'s newest ok run: the
    first of ``folders`` that has one (a deliverable that trains several models keeps each in a
    sub-run, e.g. ``("resnet20", "resnet18")`` for the quick and full presets)."""
    run = latest_run_dir(layer, deliverable_name, runs_dir)
    for name in folders:
        if (run / name / "checkpoints").is_dir():
            return run / name
    raise MissingArtifactError(
        f"{run} holds none of {[f'{n}/checkpoints' for n in folders]}; rerun "
        f"`{_make_target(layer)}` (or `python -m {layer} {deliverable_name}`)"
    )


def load_arrays(
    layer: str, deliverable_name: str, name: str, runs_dir: Path | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a lower layer's saved arrays by (layer, deliverable, file name)."""
    run = latest_run_dir(layer, deliverable_name, runs_dir)
    path = run / name
    if not path.exists():
        has = sorted(p.name for p in run.iterdir() if not is_partial(p))
        raise MissingArtifactError(
            f"{path} does not exist (the run has: {has}); rerun `{_make_target(layer)}`"
        )
    return read_arrays(path)


# ----------------------------------------------------------------------------- what and where


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes."""
    canonical = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_device(device: str | None) -> str | None:
    """``device`` if it names one (cpu, cuda, cuda:N, mps) or is None (the best present); else
    a ValueError naming it."""
    if device is None or DEVICE_PATTERN.fullmatch(device):
        return device
    raise ValueError(
        f"unknown device {device!r}; expected cpu, cuda, cuda:N (N = 0, 1, ...) or mps"
    )


def _git(top: Path, *args: str) -> bytes:
    # --no-optional-locks: reading the state must never take (or wait on) the index lock.
    return subprocess.run(
        ["git", "--no-optional-locks", *args], cwd=top, capture_output=True, timeout=30
    ).stdout


def _changes_hash(top: Path) -> str:
    """sha256 of the uncommitted changes: ``git diff HEAD`` plus each untracked file's name and
    contents, so that any edit to the working tree gives another hash."""
    h = hashlib.sha256(_git(top, "diff", "HEAD", "--binary"))
    for name in sorted(_git(top, "ls-files", "--others", "--exclude-standard", "-z").split(b"\0")):
        if name:
            h.update(b"\0" + name + b"\0" + _content_digest(top / os.fsdecode(name)))
    return h.hexdigest()


def _content_digest(path: Path) -> bytes:
    """A file's sha256; for a huge one (an unignored dataset) its size and mtime stand in."""
    try:
        st = path.stat()
        if st.st_size > UNTRACKED_HASH_LIMIT:
            return f"{st.st_size}:{st.st_mtime_ns}".encode()
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return b"unreadable"


def code_root(layer: str) -> Path:
    """The folder of a layer package's code, whose git repository records what ran."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(layer)
        if spec is not None and spec.origin:
            return Path(spec.origin).parent
    return REPO_ROOT


def git_state(where: Path = REPO_ROOT) -> dict[str, Any]:
    """commit, dirty flag and (when dirty) ``changes_hash`` of the repository holding ``where``."""
    none = {"commit": None, "dirty": None, "changes_hash": None}
    try:
        top = _git(where, "rev-parse", "--show-toplevel").decode().strip()
        if not top:
            return none
        commit = _git(Path(top), "rev-parse", "HEAD").decode().strip() or None
        dirty = bool(_git(Path(top), "status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return none
    return {
        "commit": commit,
        "dirty": dirty,
        "changes_hash": _changes_hash(Path(top)) if dirty else None,
    }


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "scipy", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _cpuinfo_fields(text: str) -> tuple[str | None, set[str]]:
    """The first processor's model name and feature flags from /proc/cpuinfo's text."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """The CPU model and its bf16 support: ``{"model", "bf16", "flags_bf16"}``.

    Hardware-dependent figures (bf16 autocast speed above all: fast with AVX-512 BF16 or AMX,
    emulated and several times slower without) must say which CPU made them.
    """
    try:
        model, flags = _cpuinfo_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = None, set()
    found = [f for f in BF16_FLAGS if f in flags]
    model = model or platform.processor() or platform.machine() or "unknown"
    return {"model": model, "bf16": bool(found), "flags_bf16": found}


def _host() -> dict[str, Any]:
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "cpu": cpu_info()}


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


# ----------------------------------------------------------------------------- the context


def new_run_id() -> str:
    return uuid.uuid4().hex


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend: every deliverable plots through this
    (figures go to files through :meth:`RunContext.savefig`, never to a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class RunContext:
    """Everything a run needs from the outside world, and where it writes."""

    layer: str
    deliverable: str
    preset: str
    seed: int
    config: dict[str, Any]
    out_dir: Path
    device: str | None = None
    run_id: str = field(default_factory=new_run_id)
    parent_id: str | None = None
    kind: str = "deliverable"
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

    def record_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write the run's ``metrics.json`` (atomically)."""
        return write_json(self.out_dir / "metrics.json", metrics)


def manifest(
    ctx: RunContext,
    *,
    start: float,
    seconds: float | None,
    status: str,
    error: str | None = None,
    git: dict[str, Any] | None = None,
    opened_config_hash: str | None = None,
) -> dict[str, Any]:
    """The manifest of a run (see the module docstring). ``git`` and ``opened_config_hash``
    default to the state now and the hash of ``ctx.config``; an open run passes those it
    recorded at opening, so a run that fills in its config keeps the hash it was asked with."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": ctx.run_id,
        "parent_id": ctx.parent_id,
        "kind": ctx.kind,
        "layer": ctx.layer,
        "deliverable": ctx.deliverable,
        "preset": ctx.preset,
        "seed": ctx.seed,
        "config": ctx.config,
        "config_hash": opened_config_hash or config_hash(ctx.config),
        "status": status,
        "error": error,
        "git": git if git is not None else git_state(),
        "versions": _versions(),
        "requested_device": ctx.device,
        "device": _device_used(ctx.device),
        "host": _host(),
        "start": dt.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
        "seconds": None if seconds is None else round(seconds, 3),
        "peak_memory": _peak_memory(),
    }


def _write_record(path: Path, obj: dict[str, Any]) -> None:
    """Write a manifest, even on a full disk: when the atomic write fails, overwrite the old
    manifest in place (truncating it frees its blocks, enough for a record of the same size)."""
    try:
        write_json(path, obj)
    except OSError:
        with open(path, "wb") as f:
            f.write(_json_bytes(obj))


# ----------------------------------------------------------------------------- signals


class InterruptGuard:
    """While a run is open in the main thread, SIGTERM and SIGINT raise :class:`RunInterrupted`
    once; later ones are ignored so that they cannot cut the recording short. While the final
    record is written a signal is held back and re-delivered after the old handlers return."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.fired: int | None = None
        self.closing = False
        self.pending: int | None = None
        self.old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.fired is not None:
            return
        if self.closing:
            self.pending = signum
            return
        self.fired = signum
        raise RunInterrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[InterruptGuard]:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # nohup'd or backgrounded: stay so
                    self.old[s] = signal.signal(s, self._handler)
        try:
            yield self
        finally:
            for s, old in self.old.items():
                signal.signal(s, signal.SIG_DFL if old is None else old)
            if self.pending is not None:
                signal.raise_signal(self.pending)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.closing = True
        try:
            yield
        finally:
            self.closing = False


# ----------------------------------------------------------------------------- the opener


class _Record:
    """The manifest of one open run: written ``running`` at once, rewritten when it ends."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.start, self.t0 = time.time(), time.perf_counter()
        self.git = git_state(code_root(ctx.layer))  # once: the tree the run started from
        self.config_hash = config_hash(ctx.config)
        self.write("running", seconds=None)

    def write(self, status: str, *, seconds: float | None, error: str | None = None) -> None:
        record = manifest(
            self.ctx,
            start=self.start,
            seconds=seconds,
            status=status,
            error=error,
            git=self.git,
            opened_config_hash=self.config_hash,
        )
        _write_record(self.ctx.out_dir / "manifest.json", record)

    def close(self, status: str, error: str | None = None) -> None:
        self.write(status, seconds=time.perf_counter() - self.t0, error=error)


def _record_exception(record: _Record, exc: BaseException) -> None:
    """Record why the run ended early. A record the disk refuses even in place leaves the
    ``running`` manifest for the parent to complete; the run's own exception is what propagates."""
    with contextlib.suppress(OSError):
        if isinstance(exc, KeyboardInterrupt):
            record.close("interrupted", f"interrupted by {signal_name(interrupt_signum(exc))}")
            return
        if isinstance(exc, RunStopped):  # on purpose: the reason, no traceback
            record.close("stopped", error_summary(exc))
            return
        with contextlib.suppress(OSError):  # the status matters more than the traceback
            _write_traceback(record.ctx.out_dir)
        record.close("failed", error_summary(exc))


def _write_traceback(run: Path) -> None:
    _atomic_write_bytes(run / "error.txt", traceback.format_exc().encode("utf-8"))


@contextlib.contextmanager
def open_run(
    layer: str,
    name: str,
    *,
    preset: str,
    seed: int,
    config: dict[str, Any],
    run_dir: Path | None = None,
    runs_dir: Path | None = None,
    parent_id: str | None = None,
    device: str | None = None,
    kind: str = "deliverable",
) -> Iterator[RunContext]:
    """Open a run: its folder, its context and a manifest whose status is always true.

    ``run_dir`` given (a Hydra output folder, a sub-run's folder, the folder a layer runner
    chose): the run is written there; else into a new ``<runs_dir>/<layer>/<name>/<timestamp>/``.
    ``parent_id`` defaults to ``$DLSTACK_PARENT_RUN_ID``. The block's exception is recorded
    (``failed``, ``interrupted`` for Ctrl-C and SIGTERM, ``stopped`` for a
    :class:`RunStopped`) and re-raised; a clean exit records
    ``ok`` and points ``latest`` in the run's parent folder at it. Under torchrun only rank 0
    (``$RANK`` unset or 0) writes the record; the other ranks get the context alone.
    """
    check_device(device)
    run = Path(run_dir) if run_dir is not None else new_run_dir(layer, name, runs_dir)
    if parent_id is None:
        parent_id = os.environ.get("DLSTACK_PARENT_RUN_ID") or None
    ctx = RunContext(
        layer, name, preset, seed, dict(config), run, device, parent_id=parent_id, kind=kind
    )
    if os.environ.get("RANK", "0") != "0":  # a torchrun worker other than rank 0 records nothing
        yield ctx
        return
    record = _Record(ctx)
    with InterruptGuard().installed() as interrupts:
        try:
            yield ctx
        except BaseException as exc:
            with interrupts.held():
                _record_exception(record, exc)
            raise
        with interrupts.held():
            record.close("ok")
            # a sub-run inside another run's folder (a deliverable's training run) is found by
            # its name there; only the runs of a deliverable or command get a ``latest`` link
            if not (run.parent / "manifest.json").exists():
                _point_latest(run)


def close_dead_run(
    run: Path,
    status: str,
    error: str,
    *,
    seconds: float | None = None,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a run whose process ended without saying so (kill -9, a crash before it opened).

    The parent that chose the folder calls this: the manifest gets ``status`` (failed or
    interrupted) and ``error``, so do the still-``running`` sub-runs inside the folder, and
    partial writes are removed. ``identity`` (layer, deliverable, ...) fills a manifest the run
    never wrote. A manifest that already holds a final status is left as it is and returned.
    """
    run = Path(run)
    remove_partial_writes(run)
    for sub in sorted(run.rglob("*/manifest.json")):
        _close_record(sub, status, f"{error}, in the run that held it", {}, None)
    return _close_record(run / "manifest.json", status, error, identity or {}, seconds)


def _close_record(
    path: Path, status: str, error: str, identity: dict[str, Any], seconds: float | None
) -> dict[str, Any]:
    man = read_json(path)
    if not isinstance(man, dict):
        man = {"schema_version": SCHEMA_VERSION, "run_id": None, **identity}
    if man.get("status") in FINAL_STATUSES:
        return man
    man.update(status=status, error=error)
    if seconds is not None:
        man["seconds"] = round(seconds, 3)
    _write_record(path, man)
    return man


def dead_child(returncode: int) -> tuple[str, str]:
    """(status, why) of a child process that ended without a final record of its run."""
    if returncode < 0:
        signum = -returncode
        name = signal_name(signum)
        if signum in (signal.SIGINT, signal.SIGTERM):
            return "interrupted", f"interrupted by {name}"
        return "failed", f"killed by signal {signum} ({name})"
    return "failed", f"exit status {returncode}, with no record of why"


__all__ = [
    "BF16_FLAGS",
    "REPO_ROOT",
    "SCHEMA_VERSION",
    "FINAL_STATUSES",
    "RunStopped",
    "MissingArtifactError",
    "InterruptGuard",
    "RunContext",
    "RunInterrupted",
    "check_device",
    "code_root",
    "close_dead_run",
    "config_hash",
    "cpu_info",
    "dead_child",
    "error_summary",
    "git_state",
    "interrupt_signum",
    "is_partial",
    "latest_run_dir",
    "load_arrays",
    "manifest",
    "new_run_dir",
    "new_run_id",
    "open_run",
    "pyplot",
    "read_arrays",
    "read_json",
    "read_manifest",
    "remove_partial_writes",
    "runs_root",
    "save_arrays",
    "signal_name",
    "write_json",
]
