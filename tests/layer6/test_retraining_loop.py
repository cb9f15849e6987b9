"""The retraining_loop deliverable at tiny settings: a tiny classifier with a drift reference,
served in a subprocess; darkened traffic crosses the threshold, the retrained version is
registered in the run's private registry and hot-reloaded with no failed request."""

from __future__ import annotations

import pytest

from layer0_math.deliverable import run_deliverable
from layer6_serving.deliverables.retraining_loop import retraining_loop
from layer6_serving.registry import ModelRegistry
from tests.layer6.test_retrain import registry  # noqa: F401  (the fixture)

TINY = {"source": "synthetic", "n_traffic": 24, "steps": 10, "batch_size": 32, "n_train": 128,
        "n_eval": 64, "n_reference": 64, "augment": False, "tolerance": 1.0,
        "reload_interval_s": 0.2, "after_swap_s": 0.5, "strength": 0.3}  # fmt: skip


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make layer6"):
        run_deliverable(retraining_loop, overrides={"registry": str(tmp_path / "none")},
                        runs_dir=tmp_path / "runs")  # fmt: skip


@pytest.mark.slow
def test_retraining_loop_tiny(registry, tmp_path):  # noqa: F811
    m = run_deliverable(retraining_loop, overrides=TINY | {"registry": str(registry.root)},
                        run_dir=tmp_path / "run")  # fmt: skip
    assert m["psi_shifted"] > 0.25 > m["psi_original"]
    assert m["psi_shifted_on_metrics"] == pytest.approx(m["psi_shifted"])
    assert m["registered"] and m["new_version"] == 2
    assert m["failed_requests_during_swap"] == 0 and m["requests_during_swap"] > 0
    assert m["versions_seen_during_swap"] == [1, 2] and m["metrics_version"] == 2
    assert m["served_version"] == 2
    assert registry.versions("resnet") == [1]  # the source registry is untouched
    assert ModelRegistry(tmp_path / "run" / "registry").versions("resnet") == [1, 2]
