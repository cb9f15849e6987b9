"""The service end to end over the real tiny models (H1's ``tiny_registry``, ONNX Runtime):
each route answers what the runtime itself answers, batched classify equals unbatched, and a
newly exported version is hot-swapped in."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from layer6_serving import runtime
from layer6_serving.export import export_bundle
from layer6_serving.service import Settings, create_app
from tests.layer6.service_fakes import png_bytes, run, serving


def _app(registry, **overrides):
    values = {"registry": registry.root, "backend": "onnx", "reload_interval_s": 0,
              "max_wait_ms": 20.0, **overrides}  # fmt: skip
    return create_app(Settings(**values))


def _images(n: int) -> np.ndarray:
    pixels = np.random.default_rng(7).integers(0, 256, (n, 3, 32, 32))
    return (pixels / 255).astype(np.float32)


def test_every_route_answers_what_the_runtime_answers(tiny_registry):
    gen = runtime.load(tiny_registry, "gpt", backend="onnx")
    den = runtime.load(tiny_registry, "ddpm", backend="onnx")
    clf = runtime.load(tiny_registry, "resnet", backend="onnx")
    prompt = "once upon a time"
    pieces = list(gen.stream(prompt, 12, 0.8, 20, 0.95, 3))
    want_text = "".join(pieces)
    want_digits = den.sample([4, 4], 5, 11)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    want_probs = clf.predict(np.ascontiguousarray(pixels.transpose(2, 0, 1))[None] / 255.0)[0]

    async def main():
        async with serving(_app(tiny_registry)) as c:
            ready = (await c.get("/readyz")).json()
            body = {"prompt": prompt, "max_tokens": 12, "temperature": 0.8, "top_k": 20,
                    "top_p": 0.95, "seed": 3}  # fmt: skip
            whole = (await c.post("/v1/generate", json=body)).json()
            stream = await c.post("/v1/generate", json={**body, "stream": True})
            digits = await c.post("/v1/sample", json={"class": 4, "count": 2, "steps": 5,
                                                      "seed": 11, "format": "array"})  # fmt: skip
            png = await c.post("/v1/sample", json={"class": 4, "count": 2, "steps": 5})
            label = await c.post("/v1/classify", files={"file": ("x.png", png_bytes(pixels))})
            too_long = await c.post("/v1/generate", json={"prompt": "a", "max_tokens": 33})
            return ready, whole, stream, digits, png, label, too_long

    ready, whole, stream, digits, png, label, too_long = run(main())
    assert ready["ready"] and ready["backend"] == "onnx"
    assert {n: m["version"] for n, m in ready["models"].items()} == {
        "gpt": 1, "ddpm": 1, "resnet": 1}  # fmt: skip
    # one event per token: this seed ends the 12 tokens inside a UTF-8 character, whose
    # replacement character rides on the last piece instead of a 13th
    assert whole["text"] == want_text and whole["tokens"] == len(pieces) == 12
    assert whole["prompt_tokens"] == len(gen.encode(prompt))
    streamed = "".join(
        json.loads(line[6:])["text"]
        for block in stream.text.split("\n\n") if block.startswith("event: token")
        for line in block.splitlines() if line.startswith("data: ")
    )  # fmt: skip
    assert streamed == want_text
    np.testing.assert_array_equal(np.array(digits.json()["images"], np.uint8), want_digits)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    body = label.json()
    np.testing.assert_allclose(body["probabilities"], want_probs, rtol=1e-5, atol=1e-7)
    assert body["class_name"] == clf.classes[int(np.argmax(want_probs))]
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"][-1] == "max_tokens"
    assert "32" in too_long.json()["detail"][0]["msg"]  # names the model's context


def test_batched_classify_equals_unbatched(tiny_registry):
    clf = runtime.load(tiny_registry, "resnet", backend="onnx")
    imgs = _images(12)
    want = np.concatenate([clf.predict(x[None]) for x in imgs])  # one call per image

    async def main():
        async with serving(_app(tiny_registry, max_batch=8)) as c:
            return await asyncio.gather(*(c.post("/v1/classify", json={"image": x.tolist()})
                                          for x in imgs))  # fmt: skip

    answers = run(main())
    got = np.array([r.json()["probabilities"] for r in answers])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_a_newly_exported_version_is_hot_swapped_in(tiny_registry_copy, tiny_checkpoints):
    registry = tiny_registry_copy
    x = _images(1)[0]

    async def main():
        async with serving(_app(registry, backend="eager")) as c:
            before = (await c.post("/v1/classify", json={"image": x.tolist()})).json()
            version = await asyncio.to_thread(export_bundle, registry, "resnet",
                                              tiny_checkpoints["classifier"], "classifier",
                                              formats=(), seed=1)  # fmt: skip
            reload = (await c.post("/admin/reload")).json()
            after = (await c.post("/v1/classify", json={"image": x.tolist()})).json()
            return version, before, reload, after

    version, before, reload, after = run(main())
    assert version == 2 and reload["swapped"] == {"resnet": [1, 2]}
    assert (before["version"], after["version"]) == (1, 2)
    want = runtime.load(registry, "resnet", 2, backend="eager").predict(x[None])[0]
    np.testing.assert_allclose(after["probabilities"], want, rtol=1e-5, atol=1e-7)
