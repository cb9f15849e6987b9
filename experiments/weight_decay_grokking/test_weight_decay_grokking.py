"""The check of weight_decay_grokking's hypothesis, on the metrics of its newest run.

Run the experiment first (``python -m layer7_research run-experiment
experiments/weight_decay_grokking``), then ``python -m pytest experiments/weight_decay_grokking``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layer0_math.lab import latest_run_dir

NAME = "weight_decay_grokking"


def latest_metrics() -> dict:
    """The metrics of the newest finished run of this experiment (skip when it never ran)."""
    try:
        run = latest_run_dir("experiments", NAME)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return json.loads(Path(run, "metrics.json").read_text())


def check(metrics: dict) -> None:
    """λ = 0 memorises (train 100%) but tests below 40%; λ = 1 tests higher on the same split."""
    assert metrics["train_accuracy_no_decay"] == 1.0, metrics
    assert metrics["test_accuracy_no_decay"] < 0.40, metrics
    assert metrics["test_accuracy_decay"] > metrics["test_accuracy_no_decay"], metrics


def test_hypothesis():
    check(latest_metrics())
