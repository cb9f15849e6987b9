"""The load_test deliverable at tiny settings on the tiny registry: servers in subprocesses,
zero errors below the limit, 503s above it, /metrics agreeing with the client, the plot and
table written; and a missing registry names the command that makes it."""

from __future__ import annotations

import json

import pytest

from layer0_math.deliverable import run_deliverable
from layer6_serving.deliverables.load_test import load_test

TINY = {"configs": ["onnx+batch", "eager+batch"], "levels": [1, 3], "classify_requests": 9,
        "generate_requests": 4, "generate_levels": [1], "max_tokens": 4, "sample_requests": 2,
        "sample_levels": [1], "sample_steps": 2, "max_concurrency": 1, "max_queue": 4,
        "over_limit_extra": 3, "runtime_batch": 4, "runtime_seconds": 0.2}  # fmt: skip


def test_missing_registry_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make layer6"):
        run_deliverable(load_test, overrides={"registry": str(tmp_path / "none")},
                        runs_dir=tmp_path / "runs")  # fmt: skip


@pytest.mark.slow
def test_load_test_tiny(tiny_registry, tmp_path):
    m = run_deliverable(load_test, overrides=TINY | {"registry": str(tiny_registry.root)},
                        run_dir=tmp_path / "run")  # fmt: skip
    assert m["errors"] == 0 and m["rejected_below_limit"] == 0
    assert m["metrics_agree"] is True
    # per backend 1 running + 4 queued of 8 concurrent streams: at least 3 refused with 503
    assert m["over_limit_requests"] == 16 and m["rejected_over_limit"] >= 6
    assert m["headline_at"] == {"endpoint": "classify", "config": "onnx+batch", "concurrency": 3}
    assert m["onnx_vs_eager_throughput"] == pytest.approx(
        m["runtime_items_per_second"]["onnx"] / m["runtime_items_per_second"]["eager"]
    )
    assert m["first_token_ms"] > 0 and m["p99_ms"] >= m["p50_ms"] > 0
    rows = json.loads((tmp_path / "run" / "levels.json").read_text())
    assert sum(r["requests"] for r in rows if r["endpoint"] == "classify") == 2 * (9 + 9)
    assert (tmp_path / "run" / "latency_vs_concurrency.png").stat().st_size > 1000
    assert "| classify | onnx+batch | 3 | 9 |" in (tmp_path / "run" / "table.md").read_text()
