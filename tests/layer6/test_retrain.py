"""The retraining loop on a tiny classifier: shifted traffic raises the drift on /metrics, the
retrain command trains a candidate through layer 3's pipeline and registers it, and the running
server hot-reloads it while a client keeps sending requests: none fails, /metrics shows the new
version. A candidate the rule refuses is not registered."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from layer3_framework.checkpoint import latest_checkpoint, read_checkpoint
from layer6_serving import retrain as rt
from layer6_serving.export import export_bundle
from layer6_serving.monitoring.drift import reference_summary
from layer6_serving.monitoring.shift import shift_uint8
from layer6_serving.registry import ModelRegistry
from layer6_serving.service.app import create_app
from layer6_serving.service.settings import Settings
from tests.layer6.service_fakes import live_server, metric

OPTS = dict(source="synthetic", steps=10, batch_size=32, n_train=128, n_eval=64, n_reference=64,
            augment=False, progress=False, shift="dark", strength=0.3)  # fmt: skip


def _held_out(checkpoint) -> dict:
    _, meta = read_checkpoint(latest_checkpoint(checkpoint / "checkpoints"))
    return rt.held_out(meta["model_spec"]["preprocessing"], rt.RetrainOptions(**OPTS))


@pytest.fixture
def registry(tmp_path, tiny_checkpoints):
    """resnet v1 (ONNX) whose drift reference is the tiny synthetic images."""
    reg = ModelRegistry(tmp_path / "registry")
    ckpt = tiny_checkpoints["classifier"]
    images, _ = _held_out(ckpt)["original"]
    export_bundle(reg, "resnet", ckpt, "classifier", formats=("onnx",),
                  extra={"reference": reference_summary(images)})  # fmt: skip
    return reg


def test_decide_rule():
    cur = {"original": 0.80, "shifted": 0.40}
    assert rt.decide(cur, {"original": 0.80, "shifted": 0.70}, 0.005)[0]
    assert rt.decide(cur, {"original": 0.796, "shifted": 0.70}, 0.005)[0]  # within tolerance
    ok, reason = rt.decide(cur, {"original": 0.79, "shifted": 0.90}, 0.005)
    assert not ok and "worse on original" in reason  # a gain on shifted never buys a loss
    ok, reason = rt.decide(cur, {"original": 0.85, "shifted": 0.39}, 0.005)
    assert not ok and "worse on shifted" in reason


def test_model_drift_reads_both_report_shapes():
    one = {"features": {}, "max_psi": 0.3, "max_feature": "pixel_r"}
    assert rt.model_drift(one, "resnet") == (0.3, "pixel_r")
    assert rt.model_drift({"resnet": one}, "resnet") == (0.3, "pixel_r")
    with pytest.raises(ValueError, match="no model 'gpt'"):
        rt.model_drift({"resnet": one}, "gpt")


def test_below_threshold_nothing_is_trained(registry, tmp_path, capsys):
    report = tmp_path / "drift.json"
    report.write_text(json.dumps({"resnet": {"features": {}, "max_psi": 0.05}}))
    argv = ["--registry", str(registry.root), "--report", str(report), "--source", "synthetic"]
    assert rt.main(argv) == 0
    assert "below 0.25: no retraining" in capsys.readouterr().out
    assert registry.versions("resnet") == [1]
    assert rt.main(["--registry", str(registry.root), "--report", str(tmp_path / "no.json")]) == 2


def _traffic(url: str, images: np.ndarray, stop: threading.Event, log: list) -> None:
    """Classify ``images`` round-robin until ``stop``; log (status, version) of every answer."""
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            r = client.post("/v1/classify", json={"image": images[i % len(images)].tolist()})
            log.append((r.status_code, r.json().get("version") if r.status_code == 200 else None))
            i += 1


@pytest.mark.slow
def test_shift_retrain_hot_swap_without_failed_requests(registry, tiny_checkpoints):
    sets = _held_out(tiny_checkpoints["classifier"])
    original, _ = sets["original"]
    dark = shift_uint8(original, "dark", 0.3)
    settings = Settings(registry=registry.root, backend="onnx", generator="", denoiser="",
                        reload_interval_s=0, drift_window=200)  # fmt: skip
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for image in dark[:40]:  # the shifted traffic
            assert c.post("/v1/classify", json={"image": image.tolist()}).status_code == 200
        report = c.get("/v1/drift").json()
        assert report["resnet"]["max_psi"] > 0.25 and report["resnet"]["status"] == "major"
        worst = report["resnet"]["max_feature"]
        text = c.get("/metrics").text
        assert metric(text, "dlstack_drift_psi", model="resnet", feature=worst) > 0.25

        stop, log = threading.Event(), []
        client = threading.Thread(target=_traffic, args=(url, original, stop, log))
        client.start()
        try:
            opts = rt.RetrainOptions(**OPTS, tolerance=1.0)  # any candidate is "no worse"
            decision = rt.retrain(registry, "resnet", report, opts)
            assert decision["registered"] and decision["new_version"] == 2
            assert c.post("/admin/reload").json()["swapped"] == {"resnet": [1, 2]}
            n_swap = len(log)
            deadline = time.monotonic() + 30
            while len(log) < n_swap + 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            client.join(30)
        text = c.get("/metrics").text
    statuses = [s for s, _ in log]
    versions = [v for _, v in log]
    assert len(log) >= n_swap + 10 and n_swap >= 1
    assert statuses == [200] * len(log)  # no request failed, before, during or after the swap
    assert versions[0] == 1 and versions[-1] == 2
    assert versions == sorted(versions)  # once on v2, never back on v1
    assert metric(text, "dlstack_model_version", model="resnet", kind="classifier",
                  backend="onnx") == 2  # fmt: skip
    manifest = registry.manifest("resnet", 2)
    assert manifest["reference"]["kind"] == "images" and "onnx" in manifest["files"]


@pytest.mark.slow
def test_a_refused_candidate_is_not_registered(registry, tmp_path):
    report = {"resnet": {"features": {}, "max_psi": 0.9, "max_feature": "pixel_r"}}
    opts = rt.RetrainOptions(**OPTS, tolerance=-1.0)  # demands +100 points: always worse
    decision = rt.retrain(registry, "resnet", report, opts, run_dir=tmp_path / "run")
    assert decision["retrained"] and not decision["registered"]
    assert decision["reason"].startswith("refused: worse on")
    assert registry.versions("resnet") == [1]
    saved = json.loads((tmp_path / "run" / "decision.json").read_text())
    assert saved["registered"] is False and saved["accuracy"] == decision["accuracy"]
    assert (tmp_path / "run" / "manifest.json").exists()  # layer 3's run record
