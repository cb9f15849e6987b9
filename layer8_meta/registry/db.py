"""The registry's database: a SQLite index of every run manifest under ``runs/``.

The manifests stay the source of truth; ``registry.sqlite`` is a cache of them that can be
deleted at any time and rebuilt. Three tables::

    runs     one row per run: the manifest's fields (config and host as JSON), the folder
             relative to the runs dir and whether it lies inside another run's folder (a
             trainer's sub-run, a test's sandbox run); indexed on layer, deliverable, status
             and start
    metrics  (run_id, name, value, position): the numeric scalars of the run's metrics.json in
             its order (a deliverable returns its headline metrics first), indexed on name and
             value, so ``best`` and a metric's history are one indexed query
    files    (path, run_id, mtime and size of manifest.json and of metrics.json, why skipped):
             what the last index saw, so the next one re-reads only what changed

**Incremental.** An index walks the runs dir (never following symlinks, so a ``latest`` link
is not a second copy of its run; layer 6's model registry ``runs/registry/`` and hidden
folders are not runs), stats each ``manifest.json`` and its ``metrics.json``, and re-reads a
run only when either file's (mtime, size) changed; rows whose folder vanished are dropped.

**Never fatal, never corrupt.** A manifest that cannot be read (truncated, not JSON, not an
object, without a run id, of an unknown status or a newer schema) or a leftover temporary file
of an atomic write (:func:`~layer0_math.files.is_partial`) is reported with its reason and
skipped, and looked at again by every index until it is fixed or gone; a layer 6 model
version's manifest kept in a run's folder is no run and is passed over in silence. The whole
index is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a crash mid-way leaves the
database as it was before, and a second indexer waits (up to a minute) for the first to commit,
then reads what it wrote, rather than failing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layer0_math.files import is_partial
from layer0_math.runrecord import FINAL_STATUSES, SCHEMA_VERSION
from layer6_serving.registry import RESERVED as MODEL_VERSION_FIELDS

DB_VERSION = 3  # bump when the tables change: an older database is rebuilt from the manifests
STATUSES = ("running", *FINAL_STATUSES)
MANIFEST, METRICS = "manifest.json", "metrics.json"
NOT_A_RUN = "not a run"  # the files table's mark for a model version's manifest
NOT_RUNS = {"registry"}  # top-level folders of runs/ that hold no runs (layer 6's model registry)

SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, parent_id TEXT, kind TEXT NOT NULL, layer TEXT NOT NULL,
    deliverable TEXT NOT NULL, preset TEXT, seed INTEGER, config TEXT NOT NULL,
    config_hash TEXT, git_commit TEXT, dirty INTEGER, status TEXT NOT NULL, error TEXT,
    start TEXT NOT NULL, seconds REAL, rss_mib REAL, cuda_mib REAL, device TEXT,
    host TEXT NOT NULL, path TEXT NOT NULL UNIQUE, nested INTEGER NOT NULL
);
CREATE INDEX runs_by_deliverable ON runs (layer, deliverable, status, start);
CREATE INDEX runs_top_level ON runs (nested, layer, deliverable, status, start);
CREATE INDEX runs_by_start ON runs (start);
CREATE INDEX runs_by_status ON runs (status, start);
CREATE INDEX runs_by_parent ON runs (parent_id);
CREATE TABLE metrics (
    run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX metrics_by_name ON metrics (name, value);
CREATE TABLE files (
    path TEXT PRIMARY KEY, run_id TEXT, manifest_stat TEXT NOT NULL, metrics_stat TEXT,
    skipped TEXT
) WITHOUT ROWID;
"""
RUN_COLUMNS = (
    "run_id, parent_id, kind, layer, deliverable, preset, seed, config, config_hash, git_commit, "
    "dirty, status, error, start, seconds, rss_mib, cuda_mib, device, host, path, nested"
)


class ManifestError(ValueError):
    """A manifest the registry cannot index; the message is the reason the index reports."""


class NotARun(Exception):  # noqa: N818 (not an error: a manifest of something else)
    """A manifest that describes no run: a model version of a layer 6 registry kept inside a
    run's folder (name, version, created; no run id)."""


@dataclass
class IndexReport:
    """What one :meth:`~layer8_meta.registry.Registry.index` did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"indexed in {self.seconds:.2f} s: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.removed} removed, {len(self.skipped)} skipped"
        )


# ----------------------------------------------------------------------------- connecting


def connect(db_path: Path) -> sqlite3.Connection:
    """Open (creating or rebuilding when its version is old) the registry database."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    conn.row_factory = sqlite3.Row
    if conn.execute("PRAGMA user_version").fetchone()[0] == DB_VERSION:
        return conn
    with transaction(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] != DB_VERSION:  # no one beat us
            for table in ("runs", "metrics", "files"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {DB_VERSION}")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: all of it lands, or (an exception, a crash) none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ----------------------------------------------------------------------------- walking runs/


def _stat(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_mtime_ns}:{st.st_size}"


def walk(runs_dir: Path) -> Iterator[tuple[str, bool, bool]]:
    """(folder relative to ``runs_dir``, whether it holds manifest.json itself, whether it lies
    inside another run's folder) for every folder with a manifest or a half-written one;
    symlinks and non-run folders are not entered."""
    runs: set[str] = set()
    for top, dirs, files in os.walk(runs_dir, followlinks=False):
        rel = os.path.relpath(top, runs_dir)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (rel == "." and d in NOT_RUNS)
        )
        partial = any(
            f.startswith(".") and is_partial(Path(f)) and f[1:].startswith(MANIFEST) for f in files
        )
        if MANIFEST in files or partial:
            parts = rel.split(os.sep)
            nested = any(os.sep.join(parts[:i]) in runs for i in range(1, len(parts)))
            runs.add(rel)
            yield rel, MANIFEST in files, nested


# ----------------------------------------------------------------------------- one manifest


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(man: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = man.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ManifestError(f"field {key!r} is {value!r}; expected a non-empty string")
    return value


def _start(man: dict[str, Any]) -> str:
    start = _text(man, "start", required=True)
    try:
        dt.datetime.fromisoformat(start)
    except ValueError:
        raise ManifestError(f"field 'start' is {start!r}; expected an ISO date and time") from None
    return start


def _checked(man: Any) -> dict[str, Any]:
    if not isinstance(man, dict):
        raise ManifestError(f"manifest is a JSON {type(man).__name__}; expected an object")
    version = man.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ManifestError(
            f"schema_version {version!r} is not one this code reads (0..{SCHEMA_VERSION})"
        )
    if man.get("status") not in STATUSES:
        raise ManifestError(f"status {man.get('status')!r}; expected one of {list(STATUSES)}")
    if not isinstance(man.get("config", {}), dict):
        raise ManifestError(f"config is {type(man['config']).__name__}; expected an object")
    if man.get("seed") is not None and not isinstance(man.get("seed"), int):
        raise ManifestError(f"seed is {man.get('seed')!r}; expected an integer")
    return man


def run_values(man: Any, rel: str, nested: bool) -> tuple[Any, ...]:
    """The ``runs`` row of a parsed manifest (ManifestError naming what is wrong, NotARun for
    a model version's manifest)."""
    if isinstance(man, dict) and "run_id" not in man and MODEL_VERSION_FIELDS <= man.keys():
        raise NotARun
    man = _checked(man)
    git = man.get("git") if isinstance(man.get("git"), dict) else {}
    memory = man.get("peak_memory") if isinstance(man.get("peak_memory"), dict) else {}
    host = man.get("host") if isinstance(man.get("host"), dict) else {}
    dirty = git.get("dirty")
    return (
        _text(man, "run_id", required=True),
        _text(man, "parent_id"),
        man.get("kind") or "deliverable",  # schema 0 manifests had no kind: all were deliverables
        _text(man, "layer", required=True),
        _text(man, "deliverable", required=True),
        man.get("preset"),
        man.get("seed"),
        json.dumps(man.get("config") or {}, sort_keys=True),
        man.get("config_hash"),
        git.get("commit"),
        None if dirty is None else int(bool(dirty)),
        man["status"],
        man.get("error"),
        _start(man),
        _number(man.get("seconds")),
        _number(memory.get("rss_mib")),
        _number(memory.get("cuda_mib")),
        man.get("device"),
        json.dumps(host, sort_keys=True),
        rel,
        int(nested),
    )


def read_manifest_file(path: str | Path) -> Any:
    """The parsed JSON at ``path`` (ManifestError saying why it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as exc:
        raise ManifestError(f"unreadable: {exc.strerror}") from None
    except ValueError as exc:
        raise ManifestError(f"not valid JSON (truncated or corrupt?): {exc}") from None


def metric_values(path: str | Path) -> tuple[dict[str, float], str | None]:
    """The numeric scalars of a metrics.json, and why there are none when it is unreadable."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        return {}, f"metrics.json is unreadable ({exc}); the run is indexed without metrics"
    if not isinstance(data, dict):
        return {}, "metrics.json is not a JSON object; the run is indexed without metrics"
    numbers = {str(k): _number(v) for k, v in data.items()}
    return {k: v for k, v in numbers.items() if v is not None}, None


# ----------------------------------------------------------------------------- indexing


class Indexer:
    """One pass of :meth:`Registry.index` over ``runs_dir`` into ``conn``."""

    def __init__(self, conn: sqlite3.Connection, runs_dir: Path) -> None:
        self.conn, self.runs_dir, self.root = conn, runs_dir, str(runs_dir)
        self.report = IndexReport()
        self.known: dict[str, tuple[str | None, str, str | None, str | None]] = {}

    def run(self) -> IndexReport:
        t0 = time.perf_counter()
        with transaction(self.conn):  # what the files table says is read inside: another
            self.known = {  # indexer that committed while we waited for the lock is seen
                r["path"]: (r["run_id"], r["manifest_stat"], r["metrics_stat"], r["skipped"])
                for r in self.conn.execute("SELECT * FROM files")
            }
            seen = list(walk(self.runs_dir)) if self.runs_dir.is_dir() else []
            self._remove_vanished({rel for rel, has, _ in seen if has})
            for rel, has_manifest, nested in seen:
                if has_manifest:
                    self._one(rel, nested)
                else:
                    self._skip(rel, "only a half-written manifest (a write was cut short)")
        self.report.seconds = time.perf_counter() - t0
        return self.report

    def _skip(self, rel: str, why: str) -> None:
        self.report.skipped.append((self.runs_dir / rel / MANIFEST, why))

    def _remove_vanished(self, present: set[str]) -> None:
        gone = [p for p in self.known if p not in present]
        for rel in gone:
            run_id = self.known.pop(rel)[0]
            self.conn.execute("DELETE FROM files WHERE path = ?", (rel,))
            if run_id is not None:
                self._drop_run(run_id)
                self.report.removed += 1

    def _drop_run(self, run_id: str) -> None:
        self.conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))

    def _one(self, rel: str, nested: bool) -> None:
        folder = os.path.join(self.root, rel)
        stats = (_stat(os.path.join(folder, MANIFEST)), _stat(os.path.join(folder, METRICS)))
        old = self.known.get(rel)
        if old is not None and old[3] in (None, NOT_A_RUN) and (old[1], old[2]) == stats:
            self.report.unchanged += old[3] is None
            return
        if old is not None and old[0] is not None:
            self._drop_run(old[0])
        run_id, why = self._read(rel, folder, nested)
        self.conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            (rel, run_id, stats[0] or "", stats[1], why if run_id is None else None),
        )
        if why is not None and why != NOT_A_RUN:
            self._skip(rel, why)
        if run_id is not None:
            if old is None or old[0] is None:
                self.report.added += 1
            else:
                self.report.updated += 1

    def _read(self, rel: str, folder: str, nested: bool) -> tuple[str | None, str | None]:
        """Insert the run at ``rel``: (its run id or None, why it was skipped or is partial)."""
        try:
            row = run_values(read_manifest_file(os.path.join(folder, MANIFEST)), rel, nested)
        except ManifestError as exc:
            return None, str(exc)
        except NotARun:
            return None, NOT_A_RUN
        clash = self.conn.execute("SELECT path FROM runs WHERE run_id = ?", (row[0],)).fetchone()
        if clash is not None:
            return None, f"run_id {row[0]} is already indexed from {clash['path']} (a copy?)"
        self.conn.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row
        )
        metrics, why = metric_values(os.path.join(folder, METRICS))
        self.conn.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?)",
            [(row[0], k, v, i) for i, (k, v) in enumerate(metrics.items())],
        )
        return row[0], why
