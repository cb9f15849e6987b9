"""``python -m layer8_meta regress [--update]``: the latest runs against a stored baseline.

``baselines/regress.json`` (tracked in git) holds, for every deliverable and benchmark, the
metrics of a run that was good::

    {"default_tolerance": 0.05,
     "entries": {"layer4_architectures/gpt_tinystories": {
         "run_id": ..., "start": ..., "commit": ...,
         "metrics": {"val_bpb": {"value": 1.336, "direction": "min"},
                     "mfu": {"value": 0.51, "direction": "ignore"},      # a timing: not checked
                     "val_loss": {"value": 3.40, "direction": "min", "tolerance": 0.02}}}}}

For each entry the newest ``ok`` run of that (layer, deliverable) is compared metric by metric.
A metric is *worse* when it moved the wrong way by more than its tolerance, relative to the
baseline value: ``current > value + tol |value|`` for ``min``, ``current < value - tol |value|``
for ``max``; *improved* when it moved the right way by as much. The direction is the baseline's
(hand-editable); a new metric's comes from ``layer8_meta/targets.yaml`` when a target names it
(``<=`` min, ``>=`` max), else from its name (:func:`~layer8_meta.registry.infer_mode`); a
deliverable's timings (seconds, speed, MFU: the machine's load more than the code) are recorded
as ``ignore``, a benchmark's are its point and are checked.

Verdicts: REGRESSION (exit 1), improved, missing run (no ok run of an entry), missing metric,
new metric, new deliverable (a run the baseline lacks), and "latest run failed" for a deliverable
whose newest run failed after its newest ok one (compared: that ok one). ``--update``
rewrites the baseline (atomically) from the newest ok runs, keeping every direction, tolerance
and entry ``note`` already in the file and the entries that have no run now.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from layer0_math.lab import REPO_ROOT, runs_root, write_json
from layer0_math.runrecord import read_json
from layer8_meta.registry import Registry, RunRow, infer_mode, is_timing
from layer8_meta.registry.cli import Parser, fmt, table

DEFAULT_BASELINE = REPO_ROOT / "baselines" / "regress.json"
DEFAULT_TOLERANCE = 0.05
TARGETS = Path(__file__).resolve().parent / "targets.yaml"
DIRECTIONS = ("min", "max", "ignore")
ABOUT = (
    "Regression baseline for `python -m layer8_meta regress` (layer8_meta/regress.py): per "
    "deliverable the metrics of a good run; direction min/max/ignore and an optional relative "
    "tolerance per metric are hand-editable and kept by --update."
)


def target_directions(path: Path = TARGETS) -> dict[tuple[str, str, str], str]:
    """(layer, deliverable, metric) -> min/max from the report's targets file (absent: {})."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    out = {}
    for t in data.get("targets", []):
        if isinstance(t, dict) and t.get("direction") in ("<=", ">="):
            key = (str(t.get("layer")), str(t.get("deliverable")), str(t.get("metric")))
            out[key] = "min" if t["direction"] == "<=" else "max"
    return out


def direction_of(row: RunRow, metric: str, targets: dict[tuple[str, str, str], str]) -> str:
    """A new metric's direction: its target's, else ignore (a timing), else from its name."""
    if (row.layer, row.deliverable, metric) in targets:
        return targets[(row.layer, row.deliverable, metric)]
    if row.kind != "benchmark" and is_timing(metric):
        return "ignore"
    return infer_mode(metric)


# ----------------------------------------------------------------------------- the baseline


def load_baseline(path: Path) -> dict[str, Any]:
    """The baseline file, checked (ValueError naming what is wrong)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{path} is not a baseline (a JSON object with 'entries')")
    for key, entry in data["entries"].items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if "/" not in key or not isinstance(metrics, dict):
            raise ValueError(f"{path}: entry {key!r} must be 'layer/deliverable' with 'metrics'")
        for name, m in metrics.items():
            _check_metric(path, key, name, m)
    return data


def _check_metric(path: Path, key: str, name: str, m: Any) -> None:
    where = f"{path}: {key} {name}"
    if not isinstance(m, dict) or m.get("direction") not in DIRECTIONS:
        got = m.get("direction") if isinstance(m, dict) else m
        raise ValueError(f"{where}: direction {got!r}; expected one of {list(DIRECTIONS)}")
    tol = m.get("tolerance", 0.0)
    if not isinstance(m.get("value"), (int, float)) or not isinstance(tol, (int, float)) or tol < 0:
        raise ValueError(
            f"{where}: value {m.get('value')!r}, tolerance {tol!r}; expected numbers (tolerance "
            ">= 0)"
        )


def current_runs(reg: Registry) -> dict[str, RunRow]:
    """'layer/deliverable' -> the newest ok run, for every deliverable and benchmark."""
    out = {}
    for layer, deliverable in reg.deliverables():
        row = reg.latest(layer, deliverable)
        if row is not None:
            out[f"{layer}/{deliverable}"] = row
    return out


def _when(row: RunRow) -> tuple[str, str]:
    return row.start, str(row.path)


def broken_since(reg: Registry, runs: dict[str, RunRow]) -> list[Finding]:
    """The deliverables whose newest finished run failed after their newest ok one (what
    broke: their metrics are the older ok run's, so say so)."""
    found = []
    for layer, deliverable in reg.deliverables():
        key = f"{layer}/{deliverable}"
        newest = reg.latest(layer, deliverable, status="failed")
        ok = runs.get(key)
        # the start is to the second; the folder's name (a timestamp to the µs) breaks ties
        if newest is not None and (ok is None or _when(newest) > _when(ok)):
            found.append(Finding(key, "-", f"latest run failed: {newest.error}"))
    return found


def updated_baseline(
    old: dict[str, Any] | None, runs: dict[str, RunRow], targets: dict[tuple[str, str, str], str]
) -> dict[str, Any]:
    """The baseline with every current run's values; hand-set directions and tolerances kept."""
    old = old or {}
    entries = dict(old.get("entries", {}))
    for key, row in sorted(runs.items()):
        kept = entries.get(key, {}).get("metrics", {})
        metrics = {}
        for name, value in row.metrics.items():
            spec = {k: v for k, v in kept.get(name, {}).items() if k in ("direction", "tolerance")}
            spec.setdefault("direction", direction_of(row, name, targets))
            metrics[name] = {"value": value, **spec}
        entries[key] = {
            "run_id": row.run_id,
            "start": row.start,
            "commit": row.commit,
            "preset": row.preset,
            **({"note": entries[key]["note"]} if "note" in entries.get(key, {}) else {}),
            "metrics": metrics,
        }
    return {
        "about": ABOUT,
        "default_tolerance": old.get("default_tolerance", DEFAULT_TOLERANCE),
        "entries": dict(sorted(entries.items())),
    }


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Finding:
    entry: str
    metric: str
    verdict: str  # ok, REGRESSION, improved, missing run, missing metric, new metric, ...
    baseline: float | None = None
    current: float | None = None
    tolerance: float | None = None
    direction: str | None = None


def judge(value: float, current: float, direction: str, tolerance: float) -> str:
    """ok, REGRESSION or improved (see the module docstring)."""
    if direction == "ignore":
        return "ok"
    margin = tolerance * abs(value)
    worse = current - value if direction == "min" else value - current
    if worse > margin:
        return "REGRESSION"
    if -worse > margin:
        return "improved"
    return "ok"


def compare_entry(
    key: str, entry: dict[str, Any], row: RunRow | None, default_tol: float
) -> list[Finding]:
    """One baseline entry's metrics against its newest ok run (None: the run is missing)."""
    if row is None:
        return [Finding(key, "-", "missing run")]
    found = []
    for name, spec in entry["metrics"].items():
        tol = float(spec.get("tolerance", default_tol))
        if name not in row.metrics:
            found.append(
                Finding(key, name, "missing metric", spec["value"], None, tol, spec["direction"])
            )
            continue
        verdict = judge(spec["value"], row.metrics[name], spec["direction"], tol)
        found.append(
            Finding(key, name, verdict, spec["value"], row.metrics[name], tol, spec["direction"])
        )
    found += [
        Finding(key, n, "new metric", None, v)
        for n, v in row.metrics.items()
        if n not in entry["metrics"]
    ]
    return found


def regress(baseline: dict[str, Any], runs: dict[str, RunRow]) -> list[Finding]:
    """Every baseline entry against its newest ok run, plus the runs the baseline lacks."""
    default_tol = float(baseline.get("default_tolerance", DEFAULT_TOLERANCE))
    found = []
    for key, entry in baseline["entries"].items():
        found += compare_entry(key, entry, runs.get(key), default_tol)
    found += [
        Finding(k, "-", "new deliverable") for k in sorted(runs) if k not in baseline["entries"]
    ]
    return found


def findings_text(found: list[Finding]) -> str:
    """The flagged findings as a table (regressions first) and a count of each verdict."""
    flagged = [f for f in found if f.verdict != "ok"]
    counts: dict[str, int] = {}
    for f in found:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    lines = []
    if flagged:
        rows = [("deliverable", "metric", "baseline", "current", "change", "tolerance", "verdict")]
        for f in sorted(flagged, key=lambda f: (f.verdict != "REGRESSION", f.entry, f.metric)):
            change = "-"
            if f.baseline is not None and f.current is not None and f.baseline != 0:
                change = f"{(f.current - f.baseline) / abs(f.baseline):+.1%}"
            tol = "-" if f.tolerance is None else f"{f.tolerance:g} ({f.direction})"
            rows.append(
                (f.entry, f.metric, fmt(f.baseline), fmt(f.current), change, tol, f.verdict)
            )
        lines.append(table(rows))
    lines.append(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "nothing to compare")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = Parser(
        prog="python -m layer8_meta regress",
        description="Compare the newest ok run of every deliverable and benchmark with the "
        "baseline; exit 1 on a regression.",
    )
    p.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help="default: baselines/regress.json"
    )
    p.add_argument(
        "--update", action="store_true", help="rewrite the baseline from the newest ok runs"
    )
    p.add_argument("--runs-dir", type=Path, default=None, help="default: $DLSTACK_RUNS or ./runs")
    a = p.parse_args(argv)
    try:
        reg = Registry.open(a.runs_dir if a.runs_dir is not None else runs_root())
        reg.index()
        runs = current_runs(reg)
        if a.update:
            old = load_baseline(a.baseline) if a.baseline.exists() else None
            write_json(a.baseline, updated_baseline(old, runs, target_directions()))
            print(f"baseline of {len(runs)} deliverable(s) written to {a.baseline}")
            return 0
        if not a.baseline.exists():
            raise ValueError(f"no baseline at {a.baseline}; write one with `regress --update`")
        found = regress(load_baseline(a.baseline), runs) + broken_since(reg, runs)
    except (ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(findings_text(found))
    print(f"compared with {a.baseline}")
    return 1 if any(f.verdict == "REGRESSION" for f in found) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
