"""The retraining_loop deliverable: the make-layer6 message without a registry. Its pieces (the
server, drift on /metrics, retrain, the swap under load) run end to end on a tiny model in
test_retrain.py; the deliverable itself needs CIFAR-10 and minutes of training."""

from __future__ import annotations

import pytest

from layer0_math.lab import MissingArtifactError, run_deliverable
from layer6_serving.deliverables import retraining_loop
from layer6_serving.deliverables.retraining_loop import _options


def test_missing_registry_names_make_layer6(tmp_path):
    with pytest.raises(MissingArtifactError, match=r"make layer6.*export_models"):
        run_deliverable(retraining_loop, overrides={"registry": str(tmp_path / "none")},
                        runs_dir=tmp_path)  # fmt: skip
    assert not (tmp_path / "layer6_serving" / "retraining_loop" / "registry").exists()


def test_config_maps_onto_retrain_options():
    from layer0_math.deliverable import resolve_config

    cfg = resolve_config(retraining_loop, "quick")
    opts = _options(cfg)
    assert (opts.shift, opts.strength, opts.steps, opts.threshold) == ("dark", 0.5, 300, 0.25)
    assert opts.source == "real" and opts.n_eval == 2000
