"""Asking the registry: runs by filter, one run by id prefix, the best run, two runs compared.

Every question is one SQL query over the indexes of :mod:`~layer8_meta.registry.db` (plus one
for the metrics of the rows it returns), so it stays well under 100 ms at 10,000 runs.

**Which way is better.** ``best`` and the regression check need to know whether a metric should
go down or up. :func:`infer_mode` reads it from the name: a metric named for a cost (loss, bpb,
ppl/perplexity, fid/kid, kl, error, seconds, diff, overhead, bytes, ...) or a benchmark's time ratio
(``conv2d_vs_torch``) is minimised; anything else (accuracy, mfu, tokens_per_second, a speedup
or a throughput ratio, ...) maximised. Pass ``mode`` when the name misleads.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layer0_math.lab import read_manifest, runs_root
from layer8_meta.registry.db import RUN_COLUMNS, STATUSES, Indexer, IndexReport, connect

MIN_WORDS = frozenset(
    (
        "loss bpb ppl perplexity fid kid kl error errors err failures seconds diff mse rmse mae "
        "nll latency ms overhead bytes"
    ).split()
)
MAX_WORDS = frozenset("throughput speedup accuracy".split())  # win over a cost word beside them
TIMING_WORDS = frozenset(
    "seconds second secs sec speedup mfu flops load latency ms throughput rss mib".split()
)
SINCE_PATTERN = re.compile(r"(\d+)([dhm])")
LAYER_PATTERN = re.compile(r"[a-z][a-z0-9_]*|\d+")
DELIVERABLE_KINDS = ("deliverable", "benchmark")


def infer_mode(metric: str) -> str:
    """``"min"`` when a word of the metric's name names a cost, else ``"max"``. A benchmark's
    ``X_vs_Y`` is a ratio of our time to the reference's (min) unless it names a throughput or
    a speedup (max)."""
    words = set(re.split(r"[^a-z0-9]+", metric.lower()))
    if MAX_WORDS & words:
        return "max"
    return "min" if MIN_WORDS & words or "vs" in words else "max"


def is_timing(metric: str) -> bool:
    """Whether a metric measures time, speed or load (the machine's state as much as the code's:
    never equal twice, so reproduce shows it without comparing and regress ignores it)."""
    return bool(TIMING_WORDS.intersection(re.split(r"[^a-z0-9]+", metric.lower())))


def check_mode(mode: str | None, metric: str) -> str:
    """``mode`` checked, or inferred from the metric's name when None."""
    if mode is None:
        return infer_mode(metric)
    if mode not in ("min", "max"):
        raise ValueError(f"mode {mode!r}; expected 'min' or 'max' (or none: from the name)")
    return mode


@dataclass(frozen=True)
class RunRow:
    """One indexed run: the manifest's fields and the numeric scalars of its metrics.json."""

    run_id: str
    parent_id: str | None
    kind: str
    layer: str
    deliverable: str
    preset: str | None
    seed: int | None
    config: dict[str, Any]
    config_hash: str | None
    commit: str | None
    dirty: bool | None
    status: str
    error: str | None
    start: str
    seconds: float | None
    rss_mib: float | None
    cuda_mib: float | None
    device: str | None
    host: dict[str, Any]
    path: Path
    metrics: dict[str, float]
    nested: bool = False  # the folder lies inside another run's (a sub-run)


class _Absent:
    """A config key one run has and the other has not."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side: the config keys that differ (dotted names; :data:`ABSENT` where a
    run lacks the key) and each metric's (a, b, b - a) (None where a run lacks it)."""

    a: RunRow
    b: RunRow
    config: dict[str, tuple[Any, Any]]
    metrics: dict[str, tuple[float | None, float | None, float | None]]


def compare_rows(a: RunRow, b: RunRow) -> Comparison:
    """The config keys (dotted) whose values differ, and every metric's (a, b, b - a)."""
    fa, fb = flatten(a.config), flatten(b.config)
    config = {
        k: (fa.get(k, ABSENT), fb.get(k, ABSENT))
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k, ABSENT) != fb.get(k, ABSENT)
    }
    metrics = {}
    for k in sorted(a.metrics.keys() | b.metrics.keys()):
        va, vb = a.metrics.get(k), b.metrics.get(k)
        metrics[k] = (va, vb, None if va is None or vb is None else vb - va)
    return Comparison(a, b, config, metrics)


def parse_since(since: dt.datetime | str) -> str:
    """The ISO start time that ``since`` ("7d", "12h", "30m", an ISO date, a datetime) means."""
    if isinstance(since, dt.datetime):
        when = since.astimezone().replace(tzinfo=None) if since.tzinfo else since
        return when.isoformat(timespec="seconds")
    m = SINCE_PATTERN.fullmatch(str(since).strip())
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        when = dt.datetime.now() - dt.timedelta(**{unit: int(m.group(1))})
        return when.isoformat(timespec="seconds")
    try:
        return dt.datetime.fromisoformat(str(since)).isoformat(timespec="seconds")
    except ValueError:
        raise ValueError(
            f"since {since!r}; expected an age like 7d, 12h, 30m or an ISO date (2026-12-01)"
        ) from None


def _clause(key: str, value: Any) -> tuple[str, Any]:
    """One filter as SQL and its parameter; a bad value is a ValueError naming it."""
    if key == "since":
        return "r.start >= ?", parse_since(value)
    if key == "status" and value not in STATUSES:
        raise ValueError(f"status {value!r}; expected one of {list(STATUSES)}")
    if key == "layer":
        if not LAYER_PATTERN.fullmatch(str(value)):
            raise ValueError(
                f"layer {value!r}; expected a number (4) or a name (layer4_architectures)"
            )
        number = re.fullmatch(r"(?:layer)?(\d+)", str(value))
        if number:  # "4", "layer4": the package layer4_<anything>
            return "r.layer LIKE ? ESCAPE '\\'", f"layer{number.group(1)}\\_%"
    return f"r.{key} = ?", value


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """The WHERE clause of the filters that are not None, and its parameters."""
    pairs = [_clause(k, v) for k, v in filters.items() if v is not None]
    where = " WHERE " + " AND ".join(c for c, _ in pairs) if pairs else ""
    return where, [p for _, p in pairs]


def _limit(limit: int | None) -> str:
    if limit is None:
        return ""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit {limit!r}; expected a positive integer")
    return f" LIMIT {limit}"


PREFIXED = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))


class Registry:
    """The run registry over one runs dir (see the package docstring)."""

    def __init__(self, runs_dir: Path, db_path: Path) -> None:
        self.runs_dir, self.db_path = runs_dir, db_path
        self.conn = connect(db_path)

    @classmethod
    def open(cls, runs_dir: Path | None = None, db_path: Path | None = None) -> Registry:
        """The registry of ``runs_dir`` (default ``runs_root()``) in ``db_path`` (default
        ``<runs_dir>/registry.sqlite``). Call :meth:`index` to bring it up to date."""
        runs = Path(runs_dir) if runs_dir is not None else runs_root()
        return cls(runs, Path(db_path) if db_path is not None else runs / "registry.sqlite")

    def close(self) -> None:
        self.conn.close()

    def index(self) -> IndexReport:
        """Bring the database up to date with the manifests (incremental; one transaction)."""
        return Indexer(self.conn, self.runs_dir).run()

    # ------------------------------------------------------------------------- rows

    def _rows(self, sql: str, params: list[Any]) -> list[RunRow]:
        rows = self.conn.execute(sql, params).fetchall()
        metrics: dict[str, dict[str, float]] = {r["run_id"]: {} for r in rows}
        ids = list(metrics)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            for m in self.conn.execute(
                f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks}) "
                "ORDER BY run_id, position",
                chunk,
            ):
                metrics[m["run_id"]][m["name"]] = m["value"]
        return [self._row(r, metrics[r["run_id"]]) for r in rows]

    def _row(self, r: sqlite3.Row, metrics: dict[str, float]) -> RunRow:
        return RunRow(
            run_id=r["run_id"],
            parent_id=r["parent_id"],
            kind=r["kind"],
            layer=r["layer"],
            deliverable=r["deliverable"],
            preset=r["preset"],
            seed=r["seed"],
            config=json.loads(r["config"]),
            config_hash=r["config_hash"],
            commit=r["git_commit"],
            dirty=None if r["dirty"] is None else bool(r["dirty"]),
            status=r["status"],
            error=r["error"],
            start=r["start"],
            seconds=r["seconds"],
            rss_mib=r["rss_mib"],
            cuda_mib=r["cuda_mib"],
            device=r["device"],
            host=json.loads(r["host"]),
            path=self.runs_dir / r["path"],
            metrics=metrics,
            nested=bool(r["nested"]),
        )

    # ------------------------------------------------------------------------- questions

    def runs(
        self,
        layer: str | None = None,
        deliverable: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        preset: str | None = None,
        since: dt.datetime | str | None = None,
        limit: int | None = None,
        nested: bool | None = None,
    ) -> list[RunRow]:
        """The runs matching every filter given, newest first. ``layer``: a package name or a
        number ("4"); ``since``: a datetime, an ISO date or an age ("7d", "12h", "30m");
        ``nested``: False for top-level runs only, True for sub-runs only."""
        filters = dict(layer=layer, deliverable=deliverable, status=status, kind=kind)
        nest = None if nested is None else int(nested)
        where, params = _where({**filters, "preset": preset, "since": since, "nested": nest})
        sql = f"SELECT {PREFIXED} FROM runs r{where} ORDER BY r.start DESC, r.path DESC"
        return self._rows(sql + _limit(limit), params)

    def get(self, run: str) -> RunRow:
        """The run whose id is or starts with ``run`` (or whose folder ``run`` is)."""
        run = str(run).strip()
        folder = Path(run)
        if "/" in run and (folder / "manifest.json").is_file():
            run = str((read_manifest(folder) or {}).get("run_id") or run)
        if not run:
            raise ValueError("an empty run id; expected a run id or a unique prefix of one")
        sql = f"SELECT {PREFIXED} FROM runs r WHERE r.run_id >= ? AND r.run_id < ? LIMIT 6"
        rows = self._rows(sql, [run, run + "\U0010ffff"])
        if not rows:
            raise ValueError(f"no run {run!r} in the registry {self.db_path} (`index` first?)")
        if len(rows) > 1 and rows[0].run_id != run:
            ids = ", ".join(r.run_id[: len(run) + 4] for r in rows)
            raise ValueError(f"run prefix {run!r} is ambiguous: {ids}; give more characters")
        return rows[0]

    def latest(self, layer: str, deliverable: str, status: str | None = "ok") -> RunRow | None:
        """The newest top-level run of (layer, deliverable) with ``status`` (None: any)."""
        rows = self.runs(layer=layer, deliverable=deliverable, status=status, limit=1, nested=False)
        return rows[0] if rows else None

    def deliverables(
        self, kinds: tuple[str, ...] | None = DELIVERABLE_KINDS
    ) -> list[tuple[str, str]]:
        """(layer, deliverable) of every top-level run of ``kinds``, sorted. The default leaves
        out the trainer's runs (kind train, multirun: ``layer3_framework/train``); None: all
        kinds. Runs inside another run's folder (sub-runs, a test's sandbox) never count."""
        sql = "SELECT DISTINCT layer, deliverable FROM runs WHERE nested = 0"
        params: list[Any] = []
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params = list(kinds)
        rows = self.conn.execute(sql + " ORDER BY layer, deliverable", params)
        return [(r[0], r[1]) for r in rows]

    def metric_history(
        self, layer: str, deliverable: str, metric: str, status: str | None = "ok"
    ) -> list[tuple[str, float, str]]:
        """(start, value, run_id) of ``metric`` over the top-level runs of (layer,
        deliverable), oldest first."""
        filters = dict(layer=layer, deliverable=deliverable, status=status, nested=0)
        where, params = _where(filters)
        sql = (
            f"SELECT r.start, m.value, r.run_id FROM runs r JOIN metrics m "
            f"ON m.run_id = r.run_id AND m.name = ?{where} ORDER BY r.start, r.path"
        )
        return [(r[0], r[1], r[2]) for r in self.conn.execute(sql, [metric, *params])]

    def best(self, metric: str, mode: str | None = None, **filters: Any) -> RunRow:
        """The run with the lowest (``mode="min"``) or highest ``metric`` among those matching
        ``filters`` (as :meth:`runs`; ``status`` defaults to ok); mode None: :func:`infer_mode`."""
        order = "ASC" if check_mode(mode, metric) == "min" else "DESC"
        filters.setdefault("status", "ok")
        if filters.get("nested") is not None:
            filters["nested"] = int(filters["nested"])
        known = {"layer", "deliverable", "status", "kind", "preset", "since", "nested"}
        unknown = set(filters) - known
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)} for best()")
        where, params = _where(filters)
        sql = (
            f"SELECT {PREFIXED} FROM metrics m JOIN runs r ON r.run_id = m.run_id "
            f"AND m.name = ?{where} ORDER BY m.value {order}, r.start DESC LIMIT 1"
        )
        rows = self._rows(sql, [metric, *params])
        if not rows:
            shown = {k: v for k, v in filters.items() if v is not None}
            raise ValueError(f"no run with metric {metric!r} matches {shown}")
        return rows[0]

    def compare(self, a: str, b: str) -> Comparison:
        """Config diff and metric deltas of two runs (ids or prefixes)."""
        return compare_rows(self.get(a), self.get(b))
