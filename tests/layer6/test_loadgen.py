"""The load generator against a tiny server on loopback: exact counts (client and /metrics),
percentiles equal numpy's on the recorded latencies, 503s counted apart, loopback only."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import numpy as np
import pytest

from layer6_serving import loadgen
from layer6_serving.service.app import create_app
from layer6_serving.service.settings import Settings
from tests.layer6.service_fakes import live_server


def _ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the tiny server did not become ready")


@pytest.fixture
def tiny_url(tiny_registry):
    """The tiny models served on loopback: one generation at a time and one waiting."""
    settings = Settings(registry=tiny_registry.root, backend="onnx", reload_interval_s=0,
                        max_concurrency=1, max_queue=1, max_wait_ms=2.0)  # fmt: skip
    with live_server(create_app(settings)) as url:
        _ready(url)
        yield url


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1:21", "127.0.0.1:80"]
)
def test_refuses_a_non_loopback_url(url):
    with pytest.raises(ValueError, match="loopback"):
        loadgen.check_loopback(url)
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(loadgen.run_level(url, loadgen.sample_endpoint(1), 1, 1))
    assert loadgen.main(["--url", url]) == 2


def test_loopback_urls_are_accepted():
    assert loadgen.check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert loadgen.check_loopback("http://localhost:1") == "http://localhost:1"


def test_summary_percentiles_and_counts_against_numpy():
    records = [loadgen.Record(200, s) for s in (0.01, 0.02, 0.03, 0.5)]
    records += [loadgen.Record(503, 0.001), loadgen.Record(422, 0.002), loadgen.Record(0, 1.0)]
    s = loadgen.LevelResult("x", 2, wall_s=2.0, records=records).summary()
    ok = np.array([0.01, 0.02, 0.03, 0.5])
    for q in (50, 95, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(ok, q) * 1000)
    assert (s["requests"], s["ok"], s["rejected"], s["errors"]) == (7, 4, 1, 2)
    assert s["by_status"] == {"0": 1, "200": 4, "422": 1, "503": 1}
    assert s["requests_per_second"] == 2.0


def test_classify_counts_match_the_servers_metrics(tiny_url):
    endpoint = loadgen.classify_endpoint(loadgen.random_pngs(3))
    result = asyncio.run(loadgen.run_level(tiny_url, endpoint, 12, 1))
    s = result.summary()
    assert (s["requests"], s["ok"], s["errors"], s["rejected"]) == (12, 12, 0, 0)
    latencies = [r.seconds for r in result.records]
    assert s["p50_ms"] == pytest.approx(np.percentile(latencies, 50) * 1000)
    assert s["p99_ms"] == pytest.approx(np.percentile(latencies, 99) * 1000)
    assert 0 < s["requests_per_second"] <= 12 / min(latencies) * 3
    counts = loadgen.request_counts(httpx.get(f"{tiny_url}/metrics").text, "/v1/classify")
    assert counts == {"200": 12}


def test_streaming_first_token_and_503_above_the_limit(tiny_url):
    # one generation slot and one queue place: of 4 concurrent streams some must get 503
    endpoint = loadgen.generate_endpoint(max_tokens=24)
    result = asyncio.run(loadgen.run_level(tiny_url, endpoint, 8, 4))
    s = result.summary()
    assert s["ok"] + s["rejected"] == 8 and s["errors"] == 0
    assert s["rejected"] >= 1 and s["ok"] >= 1
    for r in result.records:
        if r.status == 200:
            assert r.first_token_s is not None and 0 < r.first_token_s <= r.seconds
    assert s["first_token_p50_ms"] is not None
    counts = loadgen.request_counts(httpx.get(f"{tiny_url}/metrics").text, "/v1/generate")
    assert counts == {"200": s["ok"], "503": s["rejected"]}


def test_resource_sampler_sees_this_process():
    sampler = loadgen.ResourceSampler(os.getpid(), interval=0.05).start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.4:
        sum(range(10_000))  # busy: CPU above 0
    out = sampler.stop()
    assert out["samples"] >= 3
    assert out["cpu_percent_max"] > 0 and out["rss_mb_max"] > 10
    assert out["gpu"] is (loadgen._nvml_handle() is not None)
