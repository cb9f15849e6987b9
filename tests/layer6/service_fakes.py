"""Stand-in models for the service tests: instant, deterministic, and instrumented.

They have the runtime's interface (``layer6_serving.runtime``: ``Classifier.predict``,
``Generator.encode/decode/stream``, ``Denoiser.sample``) but no weights, so a test can count
calls, batch sizes and generated tokens, make a model slow or make it fail. The real tiny models
(H1's ``tiny_registry``) are used by the tests that check the service end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from layer6_serving.registry import ModelRegistry
from layer6_serving.service import Settings, create_app

CLASSES = [f"class{i}" for i in range(10)]


def reference_probs(images: np.ndarray, version: int = 1) -> np.ndarray:
    """What FakeClassifier.predict returns: a row-wise function of each image (batch-free)."""
    means = images.reshape(len(images), 3, -1).mean(axis=2)  # (N, 3)
    logits = np.stack([means[:, i % 3] * (i + 1) + version * (i == 0) for i in range(10)], 1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class FakeClassifier:
    image_size = 32

    def __init__(self, name: str, version: int, delay: float = 0.0, fail: bool = False) -> None:
        self.name, self.version, self.backend = name, version, "fake"
        self.classes = CLASSES
        self.delay, self.fail = delay, fail
        self.batches: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.fail:
            raise RuntimeError("planted failure inside the model")
        self.batches.append(len(images))
        time.sleep(self.delay)
        return reference_probs(images, self.version)


class FakeGenerator:
    """Tokens are bytes; the continuation of a prompt is 'abc...' one letter per token."""

    context = 32
    vocab_size = 256
    eos_id = None

    def __init__(self, name: str, version: int, delay: float = 0.0, fail: bool = False) -> None:
        self.name, self.version, self.backend = name, version, "fake"
        self.delay, self.fail = delay, fail
        self.produced = 0  # tokens handed out, over all streams
        self.open_streams = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode(errors="replace")

    def stream(self, prompt, max_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
        return self._stream(max_tokens)

    def _stream(self, max_tokens: int) -> Iterator[str]:
        self.open_streams += 1
        try:
            for i in range(max_tokens):
                if self.fail and i == 1:
                    raise RuntimeError("planted failure mid-stream")
                time.sleep(self.delay)
                self.produced += 1
                yield chr(ord("a") + i % 26)
        finally:
            self.open_streams -= 1


class FakeDenoiser:
    num_classes, image_size, timesteps = 10, 28, 50

    def __init__(self, name: str, version: int, delay: float = 0.0, fail: bool = False) -> None:
        self.name, self.version, self.backend = name, version, "fake"
        self.delay, self.fail = delay, fail

    def sample(self, classes, steps, seed) -> np.ndarray:
        time.sleep(self.delay)
        out = np.zeros((len(classes), 28, 28), dtype=np.uint8)
        for i, c in enumerate(classes):
            out[i, :, : c + 1] = 10 * c + steps % 7 + seed % 5
        return out


FAKES = {"classifier": FakeClassifier, "generator": FakeGenerator, "denoiser": FakeDenoiser}
NAMES = {"generator": "gpt", "denoiser": "ddpm", "classifier": "resnet"}


class FakeLoader:
    """``runtime.load`` over fakes: the kind comes from the (real) registry's manifest; every
    model made is kept in ``made`` so a test can look inside; ``options[kind]`` go to the fake."""

    def __init__(self, **options: dict) -> None:
        self.options = options
        self.made: dict[tuple[str, int], object] = {}
        self.lock = threading.Lock()

    def __call__(self, registry: ModelRegistry, name: str, version: int, backend: str,
                 threads: int = 1):  # fmt: skip
        kind = registry.manifest(name, version)["kind"]
        model = FAKES[kind](name, version, **self.options.get(kind, {}))
        with self.lock:
            self.made[(name, version)] = model
        return model

    def latest(self, name: str):
        return self.made[max(k for k in self.made if k[0] == name)]


def register_fake(registry: ModelRegistry, kind: str, name: str | None = None) -> int:
    """Add a version (a manifest only) of a fake model of ``kind``."""
    return registry.register(name or NAMES[kind], lambda d: {"kind": kind, "files": {}})


def fake_registry(root: Path) -> ModelRegistry:
    registry = ModelRegistry(root)
    for kind in FAKES:
        register_fake(registry, kind)
    return registry


def settings_for(registry: ModelRegistry, **overrides) -> Settings:
    values = {"registry": registry.root, "backend": "eager", "reload_interval_s": 0,
              "max_wait_ms": 2.0, **overrides}  # fmt: skip
    return Settings(**values)


@contextlib.asynccontextmanager
async def serving(app):
    """The app started (lifespan run, first load finished) and an in-process client to it."""
    async with app.router.lifespan_context(app):
        await app.state.core.wait_loaded()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def fake_app(root: Path, loader: FakeLoader | None = None, **overrides):
    """An app over a fresh fake registry in ``root``; returns (app, loader, registry)."""
    registry = fake_registry(root)
    loader = loader or FakeLoader()
    app = create_app(settings_for(registry, **overrides), registry=registry, load=loader)
    return app, loader, registry


def run(coro):
    return asyncio.run(coro)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text`` (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        base, _, rest = key.partition("{")
        if base == name and set(rest.rstrip("}").split(",")) == set(want.split(",")):
            return float(value)
    return 0.0


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 and a free port, in a thread; yields the base URL and
    stops the server (and waits for its thread) however the test ends."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """uint8 (H, W, 3) -> encoded image bytes."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()
