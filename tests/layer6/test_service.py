"""The REST service over stand-in models (tests/layer6/service_fakes.py): every route, every
status code with the field it names, the exact /metrics counts, micro-batching and hot reload.

The stand-ins are instant and deterministic (``reference_probs`` is what the classifier returns,
the generator's continuation is ``abc...``), so each answer is checked against an independent
expectation; the real tiny models go through the same routes in test_service_models.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest

from tests.layer6.service_fakes import (
    FakeLoader,
    fake_app,
    metric,
    png_bytes,
    reference_probs,
    register_fake,
    run,
    serving,
)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((3, 32, 32)).astype(np.float32)


def _sse(text: str) -> list[tuple[str, dict]]:
    """Server-sent events -> [(event, data)]."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def _locs(response: httpx.Response) -> list[str]:
    """The field names a 422 body points at."""
    return [str(e["loc"][-1]) for e in response.json()["detail"]]


# ------------------------------------------------------------------------------ probes, page


def test_probes_page_docs_and_readiness_after_loading(tmp_path):
    gate = threading.Event()

    class SlowLoader(FakeLoader):
        def __call__(self, *args, **kwargs):
            gate.wait(10)
            return super().__call__(*args, **kwargs)

    app, _, _ = fake_app(tmp_path, SlowLoader())

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                assert (await c.get("/healthz")).json() == {"status": "ok"}
                loading = await c.get("/readyz")
                not_loaded = await c.post("/v1/classify", json={"image": _image(0).tolist()})
                gate.set()
                await app.state.core.wait_loaded()
                ready = await c.get("/readyz")
                page = await c.get("/")
                script = await c.get("/static/app.js")
                spec = (await c.get("/openapi.json")).json()
                docs = await c.get("/docs")
        return loading, not_loaded, ready, page, script, spec, docs

    loading, not_loaded, ready, page, script, spec, docs = run(main())
    assert loading.status_code == 503 and loading.json()["ready"] is False
    assert not_loaded.status_code == 503 and "not loaded" in not_loaded.json()["detail"]
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["backend"] == "eager"
    assert body["models"] == {
        "gpt": {"kind": "generator", "version": 1, "backend": "eager"},
        "ddpm": {"kind": "denoiser", "version": 1, "backend": "eager"},
        "resnet": {"kind": "classifier", "version": 1, "backend": "eager"},
    }
    assert page.status_code == 200 and 'id="prompt"' in page.text
    assert script.status_code == 200 and "/v1/generate" in script.text
    assert docs.status_code == 200
    assert {"/v1/generate", "/v1/sample", "/v1/classify", "/v1/drift", "/admin/reload",
            "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])  # fmt: skip
    schemas = spec["components"]["schemas"]
    assert schemas["GenerateRequest"]["examples"][0]["prompt"] == "Once upon a time"
    assert schemas["SampleRequest"]["examples"][0]["class"] == 7


# ------------------------------------------------------------------------------ the three models


def test_classify_array_and_upload_match_the_model(tmp_path):
    app, _, _ = fake_app(tmp_path)
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    as_float = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32) / 255
    want = reference_probs(as_float[None])[0]

    async def main():
        async with serving(app) as c:
            return [
                await c.post("/v1/classify", json={"image": as_float.tolist()}),
                await c.post("/v1/classify", json={"image": pixels.tolist()}),  # (32,32,3) ints
                await c.post("/v1/classify", files={"file": ("x.png", png_bytes(pixels))}),
            ]

    for r in run(main()):
        assert r.status_code == 200, r.text
        body = r.json()
        np.testing.assert_allclose(body["probabilities"], want, rtol=1e-6)
        assert body["label"] == int(np.argmax(want))
        assert body["class_name"] == f"class{body['label']}"
        assert body["classes"] == [f"class{i}" for i in range(10)]
        assert (body["model"], body["version"]) == ("resnet", 1)


def test_generate_json_and_stream(tmp_path):
    app, _, _ = fake_app(tmp_path)
    req = {"prompt": "hi", "max_tokens": 5, "temperature": 0.5, "top_k": 3, "seed": 1}

    async def main():
        async with serving(app) as c:
            whole = await c.post("/v1/generate", json=req)
            streamed = await c.post("/v1/generate", json={**req, "stream": True})
        return whole, streamed

    whole, streamed = run(main())
    assert whole.status_code == 200
    body = whole.json()
    assert body["text"] == "abcde" and body["tokens"] == 5 and body["prompt_tokens"] == 2
    assert (body["model"], body["version"]) == ("gpt", 1) and body["seconds"] >= 0
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-model-version"] == "1"
    events = _sse(streamed.text)
    assert events[0] == ("start", {"model": "gpt", "version": 1, "prompt_tokens": 2})
    assert [(e, d["text"], d["index"]) for e, d in events[1:-1]] == [
        ("token", ch, i) for i, ch in enumerate("abcde")
    ]
    assert events[-1][0] == "done" and events[-1][1]["tokens"] == 5


def test_sample_png_grid_and_arrays(tmp_path):
    from io import BytesIO

    from PIL import Image

    app, _, _ = fake_app(tmp_path)

    async def main():
        async with serving(app) as c:
            png = await c.post("/v1/sample", json={"class": 3, "count": 4, "steps": 9})
            arr = await c.post("/v1/sample", json={"class": 3, "count": 2, "steps": 9,
                                                   "seed": 2, "format": "array"})  # fmt: skip
        return png, arr

    png, arr = run(main())
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    grid = np.asarray(Image.open(BytesIO(png.content)))
    assert grid.shape == (2 * 28 * 2, 2 * 28 * 2)  # 2x2 digits, pixels doubled
    # FakeDenoiser paints columns 0..class with 10*class + steps%7 + seed%5
    assert grid[0, 0] == 30 + 9 % 7 and grid[0, 2 * 4] == 0
    body = arr.json()
    assert (body["label"], body["model"], body["version"]) == (3, "ddpm", 1)
    digits = np.array(body["images"])
    assert digits.shape == (2, 28, 28) and digits[0, 0, 0] == 30 + 2 + 2


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/generate", {"prompt": "a", "max_tokens": 33}, "max_tokens"),  # > context 32
        ("/v1/generate", {"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ("/v1/generate", {"prompt": "a", "temperature": -0.1}, "temperature"),
        ("/v1/generate", {"prompt": "a", "top_k": 0}, "top_k"),
        ("/v1/generate", {"prompt": "a", "top_p": 0}, "top_p"),
        ("/v1/generate", {"prompt": "a", "top_p": 1.5}, "top_p"),
        ("/v1/generate", {"prompt": "x" * 40, "max_tokens": 4}, "prompt"),  # 40 tokens > 32
        ("/v1/generate", {"prompt": "a", "max_token": 4}, "max_token"),  # misspelt: forbidden
        ("/v1/generate", {"prompt": "a", "max_tokens": 33, "stream": True}, "max_tokens"),
        ("/v1/sample", {"class": 10}, "class"),
        ("/v1/sample", {"class": -1}, "class"),
        ("/v1/sample", {"class": 1, "count": 17}, "count"),  # > max_samples 16
        ("/v1/sample", {"class": 1, "count": 0}, "count"),
        ("/v1/sample", {"class": 1, "steps": 51}, "steps"),  # > the model's 50 timesteps
        ("/v1/sample", {"class": 1, "steps": 0}, "steps"),
        ("/v1/sample", {"class": 1, "format": "gif"}, "format"),
        ("/v1/classify", {"image": [[0.5] * 32] * 32}, "image"),  # (32, 32): wrong shape
        ("/v1/classify", {"image": np.full((3, 32, 32), 2.0).tolist()}, "image"),  # > 1
        ("/v1/classify", {"picture": []}, "picture"),
    ],
)
def test_bad_fields_are_422_naming_the_field(tmp_path, route, body, field):
    app, _, _ = fake_app(tmp_path)

    async def main():
        async with serving(app) as c:
            return await c.post(route, json=body)

    r = run(main())
    assert r.status_code == 422, r.text
    assert field in _locs(r), r.text
    assert "Traceback" not in r.text


def test_bad_uploads_are_refused_naming_the_problem(tmp_path):
    app, _, _ = fake_app(tmp_path, max_upload_pixels=64 * 64)
    small = png_bytes(np.zeros((16, 16, 3), np.uint8))
    huge = png_bytes(np.zeros((100, 100, 3), np.uint8))

    async def main():
        async with serving(app) as c:
            return [
                await c.post("/v1/classify", files={"file": ("a.txt", b"not an image at all")}),
                await c.post("/v1/classify", files={"file": ("s.png", small)}),
                await c.post("/v1/classify", files={"file": ("h.png", huge)}),
                await c.post("/v1/classify", files={"other": ("s.png", small)}),
                await c.post("/v1/classify", content=b"x", headers={"content-type": "text/plain"}),
                await c.post(
                    "/v1/classify",
                    content=b"{not json",
                    headers={"content-type": "application/json"},
                ),  # fmt: skip
            ]

    not_image, wrong_size, bomb, no_file, wrong_type, bad_json = run(main())
    assert not_image.status_code == 422 and "not a readable image" in not_image.text
    assert _locs(not_image) == ["file"]
    assert wrong_size.status_code == 422 and "16x16: expected 32x32" in wrong_size.text
    assert bomb.status_code == 413 and "refused without decoding" in bomb.text
    assert no_file.status_code == 422 and _locs(no_file) == ["file"]
    assert wrong_type.status_code == 422 and _locs(wrong_type) == ["content-type"]
    assert bad_json.status_code == 422 and _locs(bad_json) == ["image"]


def test_body_over_the_limit_is_413_declared_or_streamed(tmp_path):
    app, loader, _ = fake_app(tmp_path, max_body_bytes=2000)
    big = json.dumps({"prompt": "a" * 3000}).encode()

    async def chunks():
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    async def main():
        async with serving(app) as c:
            declared = await c.post("/v1/generate", content=big,
                                    headers={"content-type": "application/json"})  # fmt: skip
            streamed = await c.post("/v1/generate", content=chunks(),
                                    headers={"content-type": "application/json"})  # fmt: skip
            upload = await c.post("/v1/classify", files={"file": ("a.png", b"\0" * 3000)})
            small = await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 1})
        return declared, streamed, upload, small

    declared, streamed, upload, small = run(main())
    assert declared.status_code == 413 and f"{len(big)} bytes" in declared.text
    assert streamed.status_code == 413 and "max_body_bytes" in streamed.text
    assert upload.status_code == 413
    assert small.status_code == 200
    assert loader.latest("gpt").produced == 1  # only the small request reached the model


# ------------------------------------------------------------------------------ limits


def test_slow_requests_get_504_with_a_message(tmp_path):
    loader = FakeLoader(classifier={"delay": 0.5}, generator={"delay": 0.2},
                        denoiser={"delay": 0.5})  # fmt: skip
    app, _, _ = fake_app(tmp_path, loader, request_timeout_s=0.1)

    async def main():
        async with serving(app) as c:
            return [
                await c.post("/v1/classify", json={"image": _image(0).tolist()}),
                await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 8}),
                await c.post("/v1/sample", json={"class": 1}),
                await c.post(
                    "/v1/generate", json={"prompt": "a", "max_tokens": 8, "stream": True}
                ),  # fmt: skip
            ]

    classify, generate, sample, stream = run(main())
    for r, what in [(classify, "classification"), (generate, "generation"), (sample, "sampling")]:
        assert r.status_code == 504, r.text
        assert r.json()["detail"] == f"{what} took longer than the limit of 0.1 s and was stopped"
    assert stream.status_code == 200  # the headers were out before the time ran out
    events = _sse(stream.text)
    assert events[-1] == ("error", {"status": 504, "detail": "generation took longer than the "
                                    "limit of 0.1 s and was stopped"})  # fmt: skip
    gpt = loader.latest("gpt")
    for _ in range(100):  # closed once the step running at the deadline returns
        if gpt.open_streams == 0:
            break
        time.sleep(0.01)
    assert gpt.open_streams == 0  # both generations were closed


def test_full_queues_answer_503_with_retry_after(tmp_path):
    loader = FakeLoader(classifier={"delay": 0.3}, generator={"delay": 0.1})
    app, _, _ = fake_app(tmp_path, loader, max_batch=1, max_queue=1, max_concurrency=1)

    async def main():
        async def three(post):
            first = asyncio.ensure_future(post())
            await asyncio.sleep(0.05)  # the first is running: one more may wait, not two
            return await asyncio.gather(first, post(), post())

        async with serving(app) as c:
            classify = await three(
                lambda: c.post("/v1/classify", json={"image": _image(0).tolist()})
            )
            generate = await three(
                lambda: c.post("/v1/generate", json={"prompt": "a", "max_tokens": 3})
            )
            return classify, generate

    classify, generate = run(main())
    for answers in (classify, generate):
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 200, 503], codes  # one running, one queued, one refused
        refused = next(r for r in answers if r.status_code == 503)
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full (1 waiting)" in refused.json()["detail"]


def test_unhandled_errors_are_a_json_500_with_the_request_id(tmp_path):
    loader = FakeLoader(classifier={"fail": True}, generator={"fail": True})
    app, _, _ = fake_app(tmp_path, loader)

    async def main():
        async with serving(app) as c:
            cls = await c.post("/v1/classify", json={"image": _image(0).tolist()},
                               headers={"x-request-id": "req-42"})  # fmt: skip
            gen = await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 4})
            stream = await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 4,
                                                        "stream": True})  # fmt: skip
            after = await c.get("/healthz")
            return cls, gen, stream, after

    cls, gen, stream, after = run(main())
    assert cls.status_code == 500
    assert cls.json() == {"detail": "internal server error (logged under this request id)",
                          "request_id": "req-42"}  # fmt: skip
    assert cls.headers["x-request-id"] == "req-42"
    assert gen.status_code == 500 and gen.json()["request_id"] == gen.headers["x-request-id"]
    for r in (cls, gen, stream):
        assert "planted" not in r.text and "Traceback" not in r.text
    events = _sse(stream.text)
    assert [e for e, _ in events] == ["start", "token", "error"]
    assert events[-1][1]["status"] == 500
    assert events[-1][1]["request_id"] == stream.headers["x-request-id"]
    assert after.status_code == 200  # the server lives on


# ------------------------------------------------------------------------------ batching


@pytest.mark.parametrize("max_batch", [1, 8])
def test_concurrent_classify_requests_share_batches(tmp_path, max_batch):
    loader = FakeLoader(classifier={"delay": 0.02})
    app, _, _ = fake_app(tmp_path, loader, max_batch=max_batch, max_wait_ms=20)
    imgs = [_image(i) for i in range(20)]

    async def main():
        async with serving(app) as c:
            rs = await asyncio.gather(*(c.post("/v1/classify", json={"image": x.tolist()})
                                        for x in imgs))  # fmt: skip
            return rs, (await c.get("/metrics")).text

    answers, text = run(main())
    for x, r in zip(imgs, answers, strict=True):  # each caller gets its own row
        np.testing.assert_allclose(r.json()["probabilities"], reference_probs(x[None])[0],
                                   rtol=1e-6)  # fmt: skip
    batches = loader.latest("resnet").batches
    assert sum(batches) == 20
    if max_batch == 1:
        assert batches == [1] * 20
    else:
        assert max(batches) > 1 and max(batches) <= 8
    assert metric(text, "dlstack_batch_size_count", model="resnet") == len(batches)
    assert metric(text, "dlstack_batch_size_sum", model="resnet") == 20
    assert metric(text, "dlstack_queue_depth", model="resnet") == 0


# ------------------------------------------------------------------------------ metrics


def test_metrics_count_exactly_what_was_served(tmp_path):
    app, _, _ = fake_app(tmp_path)

    async def main():
        async with serving(app) as c:
            for i in range(3):
                await c.post("/v1/classify", json={"image": _image(i).tolist()})
            await c.post("/v1/classify", json={"image": []})
            await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 7})
            await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 4, "stream": True})
            await c.get("/nowhere")
            return (await c.get("/metrics")).text

    text = run(main())
    count = "dlstack_http_requests_total"
    assert metric(text, count, route="/v1/classify", method="POST", status="200") == 3
    assert metric(text, count, route="/v1/classify", method="POST", status="422") == 1
    assert metric(text, count, route="/v1/generate", method="POST", status="200") == 2
    assert metric(text, count, route="unmatched", method="GET", status="404") == 1
    hist = "dlstack_http_request_duration_seconds_count"
    assert metric(text, hist, route="/v1/classify") == 4
    assert metric(text, "dlstack_tokens_generated_total", model="gpt") == 11
    assert metric(text, "dlstack_first_token_seconds_count", model="gpt") == 2
    assert metric(text, "dlstack_inflight", kind="generator") == 0
    for name, kind in [("gpt", "generator"), ("ddpm", "denoiser"), ("resnet", "classifier")]:
        assert metric(text, "dlstack_model_version", model=name, kind=kind, backend="eager") == 1
        assert metric(text, "dlstack_model_reloads_total", model=name, outcome="swapped") == 1
    # the drift monitor's gauges are on the same registry
    assert metric(text, "dlstack_drift_observed_total", model="resnet") == 3
    assert metric(text, "dlstack_drift_observed_total", model="gpt") == 2


def test_drift_report_lists_the_monitored_models(tmp_path):
    app, _, _ = fake_app(tmp_path)

    async def main():
        async with serving(app) as c:
            await c.post("/v1/classify", json={"image": _image(0).tolist()})
            return await c.get("/v1/drift")

    r = run(main())
    assert r.status_code == 200
    report = r.json()
    assert sorted(report) == ["gpt", "resnet"]  # the denoiser has no input to drift
    assert report["resnet"]["observed_total"] == 1 and report["gpt"]["observed_total"] == 0


# ------------------------------------------------------------------------------ hot reload


def test_reload_swaps_atomically_while_requests_are_in_flight(tmp_path):
    loader = FakeLoader(classifier={"delay": 0.3})
    app, _, registry = fake_app(tmp_path, loader, max_batch=1)
    x = _image(5)

    async def main():
        async with serving(app) as c:
            before = asyncio.ensure_future(c.post("/v1/classify", json={"image": x.tolist()}))
            await asyncio.sleep(0.1)  # the request is inside v1's predict now
            assert register_fake(registry, "classifier") == 2
            reload = await c.post("/admin/reload")
            after = await c.post("/v1/classify", json={"image": x.tolist()})
            again = await c.post("/admin/reload", params={"name": "resnet"})
            unknown = await c.post("/admin/reload", params={"name": "nope"})
            ready = (await c.get("/readyz")).json()
            text = (await c.get("/metrics")).text
            return await before, reload, after, again, unknown, ready, text

    before, reload, after, again, unknown, ready, text = run(main())
    assert reload.json() == {"swapped": {"resnet": [1, 2]}, "unchanged": ["gpt", "ddpm"],
                             "errors": {}}  # fmt: skip
    assert before.status_code == 200 and before.json()["version"] == 1
    np.testing.assert_allclose(before.json()["probabilities"], reference_probs(x[None], 1)[0],
                               rtol=1e-6)  # fmt: skip
    assert after.status_code == 200 and after.json()["version"] == 2
    np.testing.assert_allclose(after.json()["probabilities"], reference_probs(x[None], 2)[0],
                               rtol=1e-6)  # fmt: skip
    assert again.json() == {"swapped": {}, "unchanged": ["resnet"], "errors": {}}
    assert unknown.status_code == 422 and _locs(unknown) == ["name"]
    assert ready["models"]["resnet"]["version"] == 2
    gauge = metric(text, "dlstack_model_version", model="resnet", kind="classifier",
                   backend="eager")  # fmt: skip
    assert gauge == 2


def test_the_poller_picks_up_a_new_version_and_a_broken_one_keeps_the_old(tmp_path):
    app, _, registry = fake_app(tmp_path, reload_interval_s=0.05)

    async def version(c) -> int:
        return (await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 1})).json()[
            "version"
        ]

    async def wait_for(c, want: int) -> int:
        for _ in range(100):
            if (v := await version(c)) == want:
                return v
            await asyncio.sleep(0.02)
        return v

    async def main():
        async with serving(app) as c:
            first = await version(c)
            register_fake(registry, "generator")
            second = await wait_for(c, 2)
            # v3 claims to be a classifier: loading it fails, v2 keeps serving
            registry.register("gpt", lambda d: {"kind": "classifier", "files": {}})
            await asyncio.sleep(0.2)
            third = await version(c)
            ready = (await c.get("/readyz")).json()
            text = (await c.get("/metrics")).text
            return first, second, third, ready, text

    first, second, third, ready, text = run(main())
    assert (first, second, third) == (1, 2, 2)
    assert ready["ready"] is True and "gpt v3 is a 'classifier' model" in ready["errors"]["gpt"]
    assert metric(text, "dlstack_model_reloads_total", model="gpt", outcome="failed") >= 1


# ------------------------------------------------------------------------------ access


def test_api_key_guards_everything_but_the_probes_and_the_page(tmp_path):
    app, _, _ = fake_app(tmp_path, api_key="s3cret")
    body = {"prompt": "a", "max_tokens": 1}

    async def main():
        async with serving(app) as c:
            out = {
                "none": await c.post("/v1/generate", json=body),
                "wrong": await c.post("/v1/generate", json=body, headers={"x-api-key": "nope"}),
                "header": await c.post(
                    "/v1/generate", json=body, headers={"x-api-key": "s3cret"}
                ),  # fmt: skip
                "bearer": await c.post(
                    "/v1/generate", json=body, headers={"authorization": "Bearer s3cret"}
                ),  # fmt: skip
                "metrics": await c.get("/metrics"),
                "reload": await c.post("/admin/reload"),
                "drift": await c.get("/v1/drift"),
            }
            for path in ("/healthz", "/readyz", "/", "/static/app.js", "/docs", "/openapi.json"):
                out[path] = await c.get(path)
            out["text"] = await c.get("/metrics", headers={"x-api-key": "s3cret"})
            return out

    out = run(main())
    for name in ("none", "wrong", "metrics", "reload", "drift"):
        assert out[name].status_code == 401, name
        assert out[name].headers["www-authenticate"] == "Bearer"
        assert "X-API-Key" in out[name].json()["detail"]
    assert out["none"].json()["detail"].startswith("no API key given")
    assert out["wrong"].json()["detail"].startswith("wrong API key")
    assert out["header"].status_code == 200 and out["bearer"].status_code == 200
    for path in ("/healthz", "/readyz", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert out[path].status_code == 200, path
    text = out["text"].text
    assert metric(text, "dlstack_auth_failures_total", reason="missing") == 4
    assert metric(text, "dlstack_auth_failures_total", reason="wrong") == 1
    count = "dlstack_http_requests_total"
    assert metric(text, count, route="/v1/generate", method="POST", status="401") == 2


def test_cors_allows_only_the_configured_origins(tmp_path):
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}

    async def ask(app):
        async with serving(app) as c:
            simple = await c.get("/healthz", headers={"origin": "https://evil.example"})
            pre = await c.options("/v1/generate", headers=preflight)
            mine = await c.get("/healthz", headers={"origin": "https://ok.example"})
            return simple, pre, mine

    closed, _, _ = fake_app(tmp_path / "a")
    opened, _, _ = fake_app(tmp_path / "b", cors_origins=("https://ok.example",))
    simple, pre, mine = run(ask(closed))
    assert "access-control-allow-origin" not in simple.headers
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-origin" not in mine.headers
    simple, pre, mine = run(ask(opened))
    assert "access-control-allow-origin" not in simple.headers
    assert pre.status_code == 400
    assert mine.headers["access-control-allow-origin"] == "https://ok.example"
