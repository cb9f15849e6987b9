# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (dlstack)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Layer 8: every run in one database you can ask questions of
#
# Every run of every layer leaves a folder with a `manifest.json` (what ran: layer, deliverable,
# config and its hash, seed, git commit, status, seconds, memory, hardware) and a `metrics.json`.
# The manifests are the source of truth; the *registry* (`layer8_meta.registry`) indexes them into
# SQLite, incrementally, so that "which run had the best validation loss?", "what failed this
# week?", "how did this metric move over time?" are one query each. A half-written or corrupt
# manifest is reported and skipped, never fatal.
#
# Here we make a small runs folder of our own with `open_run` (the one opener every layer uses), in
# a temporary folder, index it and query it.

# %%
import json
import math
import os
import sqlite3
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from layer0_math.lab import open_run
from layer8_meta.registry import Registry
from layer8_meta.registry.cli import runs_table

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
LRS = [1e-3, 3e-3, 1e-2] if SMALL else [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
runs_dir = Path(tempfile.mkdtemp(prefix="layer8-notebook-")) / "runs"

# %% [markdown]
# ## Some runs: a learning-rate sweep, one failure, one broken manifest
#
# The "training" here is a closed form, `val_loss = 1 + (log10 lr + 2.5)²`, so we know which run
# is best before asking.

# %%
expected = {}
for seed, lr in enumerate(LRS):
    with open_run("layer4_architectures", "notebook_sweep", preset="quick", seed=seed,
                  config={"lr": lr, "steps": 100}, runs_dir=runs_dir) as ctx:  # fmt: skip
        val_loss = 1 + (math.log10(lr) + 2.5) ** 2
        ctx.record_metrics({"val_loss": val_loss, "lr": lr})
        expected[ctx.run_id] = val_loss
try:
    with open_run("layer4_architectures", "notebook_sweep", preset="quick", seed=99,
                  config={"lr": 10.0, "steps": 100}, runs_dir=runs_dir):  # fmt: skip
        raise FloatingPointError("loss is nan at step 3")
except FloatingPointError:
    pass  # recorded as failed, with the error, in its manifest
broken = runs_dir / "layer4_architectures" / "notebook_sweep" / "half-written"
broken.mkdir(parents=True)
(broken / "manifest.json").write_text('{"run_id": "abc", "status": ')  # cut off mid-write
print(f"{len(expected) + 1} runs and one broken manifest under {runs_dir}")

# %% [markdown]
# ## Index, then ask

# %%
reg = Registry.open(runs_dir=runs_dir)
report = reg.index()
print(report.summary())
for path, why in report.skipped:
    print(f"skipped {path.parent.name}: {why}")
print(runs_table(reg.runs()))
assert report.added == len(expected) + 1 and len(report.skipped) == 1

best = reg.best("val_loss", layer="4")
failed = reg.runs(status="failed")
print(
    f"best val_loss: {best.metrics['val_loss']:.3f} at lr={best.config['lr']} (run {best.run_id})"
)
print(f"failed: {[(r.config['lr'], r.error) for r in failed]}")
assert best.run_id == min(expected, key=expected.get)
assert [r.config["lr"] for r in failed] == [10.0]

# %% [markdown]
# ## The database is plain SQLite; the manifests stay the truth
#
# The same answer straight from the tables, and a second `index()` that finds nothing new (it
# compares each manifest's size and modification time with what it indexed).

# %%
with sqlite3.connect(runs_dir / "registry.sqlite") as conn:
    row = conn.execute(
        "SELECT run_id, value FROM metrics WHERE name = 'val_loss' ORDER BY value LIMIT 1"
    ).fetchone()
print("sqlite3 says:", row)
assert row[0] == best.run_id
manifest = json.loads((best.path / "manifest.json").read_text())
assert manifest["config"]["lr"] == best.config["lr"] and manifest["status"] == "ok"
again = reg.index()
print(again.summary())
assert again.added == 0 and again.unchanged == len(expected) + 1

# %%
history = reg.metric_history("layer4_architectures", "notebook_sweep", "val_loss")
lrs = [reg.get(run_id).config["lr"] for _, _, run_id in history]
fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogx(lrs, [v for _, v, _ in history], "o-", label="val_loss of each ok run")
ax.axvline(best.config["lr"], color="grey", linestyle="--", label="registry's best")
ax.set(
    title="a learning-rate sweep, read back from the registry",
    xlabel="learning rate",
    ylabel="validation loss",
)
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** `python -m layer8_meta runs --layer 4 --status failed --since 7d`,
# `show RUN`, `compare RUN RUN` and `best --metric val_loss` ask the same questions of your real
# `runs/`; `make report` turns the latest run of every deliverable into one page, and
# `make reproduce RUN=<id>` reruns any run from its manifest alone.
