"""The lab: how every deliverable in every layer runs, and what it leaves behind.

A *deliverable* is a function ``fn(ctx: RunContext) -> dict`` decorated with :func:`deliverable`,
which gives it a config per preset (``quick``: minutes on a 2-core CPU; ``full``: the real run,
written as the keys that change). Each layer's ``deliverables`` package holds one module per
deliverable and lists them in ``__all__`` in run order. Running one opens a run
(:func:`open_run`, the one opener, also used by Hydra training runs) and writes one folder::

    runs/<layer>/<deliverable>/<timestamp>/
        manifest.json   schema_version, run_id, parent_id, kind; preset, seed, config and its
                        hash; git commit, dirty flag and a hash of the changes; versions; device;
                        host (CPU model, bf16 support); start, seconds, peak memory; and a status
                        that is always true: running, then ok, failed (+ error, error.txt) or
                        interrupted
        metrics.json    the metrics the function returned
        *.png, *.safetensors (+ .json sidecar), ...   whatever it saved through the context
    runs/<layer>/<deliverable>/latest -> the newest ok run

``python -m layerN_x`` calls :func:`cli`, which runs each deliverable of the layer in its own
subprocess in a folder it chose, skips those already run ok at the same commit, preset, seed
and config (unless ``--force`` or ``FORCE=1``), then prints the summary table: deliverable |
status | headline metrics | seconds | artifacts. Models flow upward as artifacts, never as
imports: :func:`load_arrays` finds a lower layer's saved weights by (layer, deliverable) and
names the ``make layerN`` that produces them when they are missing.

This module is the public face; the code lives in ``runrecord`` (the opener, the manifest,
files), ``deliverable`` (presets, discovery, running one in-process) and ``runner`` (the layer
CLI and its table).
"""

from __future__ import annotations

from layer0_math.deliverable import (
    PRESETS,
    DeliverableFn,
    DeliverableSpec,
    Metrics,
    blas_thread_limit,
    deliverable,
    deliverable_named,
    deliverables_of,
    layer_of,
    resolve_config,
    run_deliverable,
    seed_everything_numpy,
    spec_of,
)
from layer0_math.runner import Outcome, built_layers, cli, main, run_layers, summary_table
from layer0_math.runrecord import (
    REPO_ROOT,
    SCHEMA_VERSION,
    MissingArtifactError,
    RunContext,
    RunInterrupted,
    RunStopped,
    check_device,
    checkpoint_dir,
    close_dead_run,
    config_hash,
    cpu_info,
    error_summary,
    is_partial,
    latest_run_dir,
    load_arrays,
    manifest,
    new_run_dir,
    open_run,
    pyplot,
    read_arrays,
    read_manifest,
    runs_root,
    save_arrays,
    write_json,
)

__all__ = [
    "PRESETS",
    "REPO_ROOT",
    "SCHEMA_VERSION",
    "DeliverableFn",
    "DeliverableSpec",
    "Metrics",
    "MissingArtifactError",
    "Outcome",
    "RunContext",
    "RunInterrupted",
    "RunStopped",
    "blas_thread_limit",
    "built_layers",
    "check_device",
    "checkpoint_dir",
    "cli",
    "close_dead_run",
    "config_hash",
    "cpu_info",
    "deliverable",
    "deliverable_named",
    "deliverables_of",
    "error_summary",
    "is_partial",
    "latest_run_dir",
    "layer_of",
    "load_arrays",
    "main",
    "manifest",
    "new_run_dir",
    "open_run",
    "pyplot",
    "read_arrays",
    "read_manifest",
    "resolve_config",
    "run_deliverable",
    "run_layers",
    "runs_root",
    "save_arrays",
    "seed_everything_numpy",
    "spec_of",
    "summary_table",
    "write_json",
]

if __name__ == "__main__":
    raise SystemExit(main())
