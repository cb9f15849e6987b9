"""The run registry: every run under ``runs/`` in one SQLite database you can ask questions of.

Each run folder's ``manifest.json`` (written by :func:`layer0_math.lab.open_run`) and
``metrics.json`` are indexed into ``runs/registry.sqlite`` (:mod:`.db`: incremental, one
transaction, a bad manifest reported and skipped) and queried by :class:`Registry`
(:mod:`.query`)::

    reg = Registry.open()                   # runs_root(), <runs>/registry.sqlite
    reg.index()                             # IndexReport(added, updated, ..., skipped)
    reg.runs(layer="4", status="failed", since="7d")
    reg.best("val_loss", layer="layer4_architectures")
    reg.compare("51efb5", "d697b7")         # config diff, metric deltas

The manifests stay the source of truth: delete the database and the next index rebuilds it.
``python -m layer8_meta runs|show|compare|best|index`` (:mod:`.cli`) is the same from a shell.
"""

from layer8_meta.registry.db import IndexReport
from layer8_meta.registry.query import (
    ABSENT,
    Comparison,
    Registry,
    RunRow,
    compare_rows,
    flatten,
    infer_mode,
    is_timing,
    parse_since,
)

__all__ = [
    "ABSENT",
    "Comparison",
    "IndexReport",
    "Registry",
    "RunRow",
    "compare_rows",
    "flatten",
    "infer_mode",
    "is_timing",
    "parse_since",
]
