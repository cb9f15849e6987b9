"""InputMonitor: the sliding window against summaries recomputed from scratch, and the
Prometheus text against the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from layer6_serving.monitoring import drift
from layer6_serving.monitoring.monitor import InputMonitor


def _images(n, seed, scale=1.0):
    return (np.random.default_rng(seed).random((n, 3, 32, 32)) * scale).astype(np.float32)


def _probs(n, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(10), n).astype(np.float32)


def _samples(registry):
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_window_equals_summary_of_last_items():
    ref_x, ref_p = _images(100, 0), _probs(100, 0)
    reference = drift.reference_summary(ref_x, ref_p)
    registry = CollectorRegistry()
    monitor = InputMonitor(reference, registry, window=7, model="resnet")
    batches = [(_images(n, 10 + n, scale=0.3 + 0.1 * n), _probs(n, 20 + n)) for n in (3, 4, 5)]
    for x, p in batches:
        monitor.observe_images(x, p)
    all_x = np.concatenate([b[0] for b in batches])
    all_p = np.concatenate([b[1] for b in batches])
    want = drift.compare(reference, drift.reference_summary(all_x[-7:], all_p[-7:]))
    report = monitor.report()
    json.dumps(report)
    assert report["n_window"] == 7 and report["observed_total"] == 12
    assert report["features"].keys() == want["features"].keys()
    for name, f in want["features"].items():
        assert report["features"][name]["psi"] == pytest.approx(f["psi"], rel=1e-12)
        assert report["features"][name]["n_observed"] == f["n_observed"]
    np.testing.assert_allclose(
        report["channel_mean"]["observed"], all_x[-7:].mean(axis=(0, 2, 3)), rtol=1e-5
    )
    assert report["max_psi"] == max(f["psi"] for f in want["features"].values())


def test_gauges_match_report():
    reference = drift.reference_summary(_images(50, 0), _probs(50, 0))
    registry = CollectorRegistry()
    monitor = InputMonitor(reference, registry, window=100, model="resnet")
    monitor.observe_images(_images(20, 1, scale=0.5), _probs(20, 1))
    report = monitor.report()
    samples = _samples(registry)
    for name, f in report["features"].items():
        labels = (("feature", name), ("model", "resnet"))
        assert samples[("dlstack_drift_psi", labels)] == pytest.approx(f["psi"])
        assert samples[("dlstack_drift_ks", labels)] == pytest.approx(f["ks"])
    assert samples[("dlstack_drift_window_items", (("model", "resnet"),))] == 20
    assert samples[("dlstack_drift_observed_total", (("model", "resnet"),))] == 20
    mean_r = samples[("dlstack_input_channel_mean", (("channel", "r"), ("model", "resnet")))]
    assert mean_r == pytest.approx(report["channel_mean"]["observed"][0])
    assert report["status"] == "major"


def test_two_monitors_share_one_registry_and_text_drift():
    registry = CollectorRegistry()
    images = InputMonitor(drift.reference_summary(_images(10, 0)), registry, model="resnet")
    prompts = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    text_ref = drift.reference_summary_text(prompts * 10, vocab_size=64)
    text = InputMonitor(text_ref, registry, window=50, model="gpt")
    for p in prompts:
        text.observe_prompt(p)
    assert text.report()["max_psi"] == pytest.approx(0.0, abs=1e-12)
    for _ in range(20):
        text.observe_prompt(list(range(40, 64)))  # long prompts of rare ids
    report = text.report()
    assert report["status"] == "major"
    want = drift.compare(
        text_ref, drift.reference_summary_text(prompts + [list(range(40, 64))] * 20, 64)
    )
    assert report["features"]["prompt_length"]["psi"] == pytest.approx(
        want["features"]["prompt_length"]["psi"]
    )
    samples = _samples(registry)
    assert samples[("dlstack_drift_observed_total", (("model", "gpt"),))] == 23
    assert samples[("dlstack_drift_observed_total", (("model", "resnet"),))] == 0
    assert images.report()["status"] == "no data"


@pytest.mark.parametrize("reference", [None, {}])
def test_without_reference_only_counts(reference):
    registry = CollectorRegistry()
    monitor = InputMonitor(reference, registry, window=5, model="ddpm")
    monitor.observe_images(_images(3, 0), _probs(3, 0))
    monitor.observe_prompt([1, 2])
    report = monitor.report()
    assert report["observed_total"] == 4 and report["n_window"] == 0
    assert report["features"] == {} and report["kind"] is None


def test_set_reference_keeps_window_and_recompares():
    registry = CollectorRegistry()
    dark = _images(30, 1, scale=0.4)
    monitor = InputMonitor(drift.reference_summary(_images(30, 0)), registry, window=30, model="m")
    monitor.observe_images(dark, _probs(30, 1))
    before = monitor.report()["max_psi"]
    monitor.set_reference(drift.reference_summary(_images(30, 2, scale=0.4)), version=2)
    after = monitor.report()
    assert after["n_window"] == 30 and after["version"] == 2
    assert before > drift.PSI_MAJOR > after["max_psi"]
    psi_r = _samples(registry)[("dlstack_drift_psi", (("feature", "pixel_r"), ("model", "m")))]
    assert psi_r == pytest.approx(after["features"]["pixel_r"]["psi"])


@pytest.mark.parametrize("window", [0, -1, 2.5])
def test_rejects_bad_window(window):
    with pytest.raises(ValueError, match="window"):
        InputMonitor(None, CollectorRegistry(), window=window)


def test_rejects_bad_reference_and_inputs():
    with pytest.raises(ValueError, match="kind"):
        InputMonitor({"kind": "audio"}, CollectorRegistry())
    text = InputMonitor(drift.reference_summary_text([[1]], 10), CollectorRegistry())
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        text.observe_prompt([3, 12])
