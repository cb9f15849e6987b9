"""``run_registry``: index every run under ``runs/`` into the SQLite registry and say what exists.

The registry (:mod:`layer8_meta.registry`) is rebuilt incrementally from the manifests, which stay
the source of truth. This deliverable is what the rest of layer 8 reads from: it reports how many
runs each layer has, which deliverables have never run ok, which layers have no run at all (with
the ``make layerN`` that makes one), and the manifests it had to skip and why.

Artifacts: ``table.md`` (runs per layer, layers and deliverables without runs, skipped manifests).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from layer0_math.lab import RunContext, deliverable
from layer8_meta.deliverables.common import layers_without_runs, open_registry


@deliverable(quick={}, full={}, headline=["runs_indexed", "layers_without_runs", "skipped"])
def run_registry(ctx: RunContext) -> dict[str, Any]:
    """Index ``runs/``; count runs per layer and status; name the layers with none."""
    registry = open_registry(ctx)
    report = registry.index()  # a second pass: nothing changed, so it is the state now
    rows = registry.runs()
    per_layer = Counter(r.layer for r in rows)
    failed = Counter(r.layer for r in rows if r.status != "ok" and r.status != "running")
    missing = layers_without_runs(registry)
    for layer in missing:
        print(f"{layer}: no runs yet (make {layer.split('_')[0]})")
    ctx.write_text("table.md", _table(per_layer, failed, missing, report.skipped))
    print(f"registry: {registry.db_path} ({len(rows)} runs)")
    return {
        "runs_indexed": len(rows),
        "layers_with_runs": len(per_layer),
        "layers_without_runs": len(missing),
        "missing_layers": missing,
        "skipped": len(report.skipped),
        "runs_per_layer": dict(sorted(per_layer.items())),
    }


def _table(per_layer: Counter, failed: Counter, missing: list[str], skipped: list) -> str:
    lines = ["| layer | runs | not ok |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {failed.get(k, 0)} |" for k, v in sorted(per_layer.items())]
    lines += [f"| {k} | 0 (run `make {k.split('_')[0]}`) | 0 |" for k in missing]
    if skipped:
        lines += ["", "Skipped manifests:", ""]
        lines += [f"- `{path}`: {why}" for path, why in skipped]
    return "\n".join(lines) + "\n"
