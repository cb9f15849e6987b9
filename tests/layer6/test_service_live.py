"""The service under a real uvicorn on loopback: tokens stream as they are made, and a client
that disconnects mid-stream frees its slot and stops the generation loop."""

from __future__ import annotations

import time

import httpx

from tests.layer6.service_fakes import FakeLoader, fake_app, live_server, metric


def _wait(cond, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_tokens_stream_live_and_a_disconnect_frees_the_slot(tmp_path):
    loader = FakeLoader(generator={"delay": 0.05})
    app, _, _ = fake_app(tmp_path, loader)
    body = {"prompt": "a", "max_tokens": 30, "stream": True}
    with live_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert _wait(lambda: client.get("/readyz").status_code == 200)
        gpt = loader.latest("gpt")
        t0 = time.monotonic()
        seen: list[float] = []
        with client.stream("POST", "/v1/generate", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line == "event: token":
                    seen.append(time.monotonic() - t0)
                    if len(seen) == 3:
                        break  # leaving the block closes the connection mid-stream
        # the first tokens arrived one by one while the rest was still being generated
        assert seen[0] < 0.05 * 30 / 2 and seen[2] > seen[0]

        def inflight() -> float:
            return metric(client.get("/metrics").text, "dlstack_inflight", kind="generator")

        assert _wait(lambda: inflight() == 0 and gpt.open_streams == 0)
        stopped_at = gpt.produced
        time.sleep(0.3)
        assert gpt.produced == stopped_at < 30  # the loop stopped, it did not run on
        # the slot is free: a new request is served
        done = client.post("/v1/generate", json={"prompt": "a", "max_tokens": 2})
        assert done.status_code == 200 and done.json()["text"] == "ab"
