"""The gRPC server on loopback against the tiny registry, checked against the runtime directly.

Generate must stream the runtime's own pieces for the same seed; Classify must equal
``Classifier.predict`` on pixels decoded here by Pillow (not by the service's decoder); bad
fields must be INVALID_ARGUMENT naming the field; the API key, a full queue and the server's
deadline must give their status codes; the stubs must be what ``make proto`` generates.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from layer6_serving import runtime
from layer6_serving.grpc.client import ServingClient
from layer6_serving.grpc.server import serve
from layer6_serving.service.core import ServingCore
from layer6_serving.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PROMPT = "once upon a time there was"


@contextlib.contextmanager
def grpc_server(registry, load=runtime.load, **settings):
    """A started core + gRPC server on a free loopback port, on an event loop in a thread;
    yields (target, core) and stops everything, whatever the test did."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    values = {"registry": registry.root, "backend": "onnx", "reload_interval_s": 0, **settings}
    core = ServingCore(Settings(**values), load=load)
    server = None
    try:
        run(core.start())
        run(core.wait_loaded())
        assert core.ready, core.status()
        server, port = run(serve(core, 0))
        yield f"127.0.0.1:{port}", core
    finally:
        if server is not None:
            run(server.stop(None))
        run(core.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def server(tiny_registry):
    with grpc_server(tiny_registry) as (target, core):
        yield target, core


@pytest.fixture(scope="module")
def models(tiny_registry):
    return {
        "gpt": runtime.load(tiny_registry, "gpt", backend="onnx"),
        "resnet": runtime.load(tiny_registry, "resnet", backend="onnx"),
    }


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_generate_streams_the_runtime_pieces(server, models):
    target, _ = server
    sampling = {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 7}
    expected = list(models["gpt"].stream(PROMPT, 12, **sampling))
    with ServingClient(target) as client:
        got = list(client.generate(PROMPT, max_tokens=12, **sampling))
        done = client.last_done
    assert got == expected, (got, expected)
    assert done is not None and done.done and done.tokens == len(expected)
    assert done.seconds > 0


def test_generate_greedy_equals_the_runtime(server, models):
    target, _ = server
    with ServingClient(target) as client:
        greedy = list(client.generate(PROMPT, max_tokens=8, temperature=0.0))
    assert greedy == list(models["gpt"].stream(PROMPT, 8, temperature=0.0))


def test_generate_default_max_tokens_is_checked_against_the_context(server):
    target, _ = server
    with ServingClient(target) as client:
        code, details = _code(lambda: list(client.generate(PROMPT, seed=3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("max_tokens:") and "64" in details and "32" in details


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 33}, "max_tokens"),  # the tiny GPT's context is 32
        ({"max_tokens": 4, "temperature": -0.5}, "temperature"),
        ({"max_tokens": 4, "top_k": 0}, "top_k"),
        ({"max_tokens": 4, "top_p": 1.5}, "top_p"),
        ({"max_tokens": 4, "top_p": 0.0}, "top_p"),
        ({"max_tokens": 4, "seed": -1}, "seed"),
    ],
)
def test_generate_bad_fields_are_invalid_argument(server, fields, field):
    target, _ = server
    with ServingClient(target) as client:
        max_tokens = fields.pop("max_tokens")
        code, details = _code(lambda: list(client.generate(PROMPT, max_tokens, **fields)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(f"{field}:"), details


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def test_classify_png_and_array_equal_predict(server, models):
    target, _ = server
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    x = (pixels.astype(np.float32) / 255).transpose(2, 0, 1)[None]  # (1, 3, 32, 32)
    expected = models["resnet"].predict(x)[0]
    with ServingClient(target) as client:
        from_png = client.classify(image=_png(pixels))
        from_array = client.classify(array=x[0])
        channels_last = client.classify(array=x[0].transpose(1, 2, 0))
    for reply in (from_png, from_array, channels_last):
        np.testing.assert_allclose(reply["probabilities"], expected, atol=1e-6)
        assert reply["label"] == int(expected.argmax())
        assert reply["class_name"] == models["resnet"].classes[reply["label"]]
        assert (reply["model"], reply["version"]) == ("resnet", 1)


@pytest.mark.parametrize(
    ("request_kw", "field", "words"),
    [
        ({"image": b"not an image at all"}, "image", "not a readable image"),
        ({"image": _png(np.zeros((16, 16, 3), np.uint8))}, "image", "16x16"),
        ({"image": b""}, "image", "empty"),
        ({"array": np.zeros((3, 16, 16), np.float32)}, "array", "shape"),
        ({"array": np.full((3, 32, 32), 2.0, np.float32)}, "array", "[0, 1]"),
    ],
)
def test_classify_bad_input_is_invalid_argument(server, request_kw, field, words):
    target, _ = server
    with ServingClient(target) as client:
        code, details = _code(lambda: client.classify(**request_kw))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith(f"{field}:") and words in details, details


def test_classify_empty_request_names_the_input(server):
    from layer6_serving.grpc import serving_pb2 as pb

    target, _ = server
    with ServingClient(target) as client:
        code, details = _code(lambda: client.stub.Classify(pb.ClassifyRequest(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("input:")


def test_health_lists_the_loaded_models(server):
    target, core = server
    with ServingClient(target) as client:
        health = client.health()
    assert health["live"] and health["ready"]
    got = {m["name"]: (m["kind"], m["version"], m["backend"]) for m in health["models"]}
    expected = {
        n: (m["kind"], m["version"], m["backend"]) for n, m in core.status()["models"].items()
    }
    assert got == expected and set(got) == {"gpt", "ddpm", "resnet"}


def test_calls_are_counted_by_method_and_code(tiny_registry):
    with grpc_server(tiny_registry) as (target, core), ServingClient(target) as client:
        client.health()
        list(client.generate(PROMPT, max_tokens=3, seed=0))
        _code(lambda: list(client.generate(PROMPT, max_tokens=0)))
        client.classify(array=np.zeros((3, 32, 32), np.float32))
        r = core.metrics.registry
        count = lambda method, code: r.get_sample_value(
            "dlstack_grpc_requests_total", {"method": method, "code": code}
        )
        assert count("Health", "OK") == 1
        assert count("Generate", "OK") == 1
        assert count("Generate", "INVALID_ARGUMENT") == 1
        assert count("Classify", "OK") == 1


def test_api_key_is_required_when_configured(tiny_registry):
    with grpc_server(tiny_registry, api_key="s3cret", classifier="", denoiser="") as (target, core):
        with ServingClient(target) as anonymous:
            code, details = _code(lambda: list(anonymous.generate(PROMPT, 3)))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "missing" in details
            assert anonymous.health()["ready"]  # the probe needs no key
        with ServingClient(target, api_key="wrong") as wrong:
            code, details = _code(lambda: list(wrong.generate(PROMPT, 3)))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong" in details
        with ServingClient(target, api_key="s3cret") as right:
            pieces = list(right.generate(PROMPT, 3, seed=0))
            assert right.last_done is not None and right.last_done.done and pieces
        # a bearer token works too (what Prometheus' authorization option sends)
        from layer6_serving.grpc import serving_pb2 as pb

        with ServingClient(target) as bearer:
            tokens = list(
                bearer.stub.Generate(
                    pb.GenerateRequest(prompt=PROMPT, max_tokens=2),
                    metadata=(("authorization", "Bearer s3cret"),),
                    timeout=30,
                )
            )
            assert tokens[-1].done and len(tokens) > 1
        r = core.metrics.registry
        assert r.get_sample_value("dlstack_auth_failures_total", {"reason": "missing"}) == 1
        assert r.get_sample_value("dlstack_auth_failures_total", {"reason": "wrong"}) == 1


class SlowGenerator:
    """The runtime's generator, each piece ``delay`` seconds late."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, *args, **kwargs):
        pieces = self.inner.stream(*args, **kwargs)

        def slow():
            for piece in pieces:
                time.sleep(self.delay)
                yield piece

        return slow()


def _slow_load(delay):
    def load(registry, name, *args, **kwargs):
        model = runtime.load(registry, name, *args, **kwargs)
        return SlowGenerator(model, delay) if name == "gpt" else model

    return load


@pytest.mark.slow
def test_full_queue_is_resource_exhausted_and_timeout_is_deadline_exceeded(tiny_registry):
    only_gpt = {"classifier": "", "denoiser": ""}
    with grpc_server(
        tiny_registry,
        load=_slow_load(0.25),
        max_concurrency=1,
        max_queue=1,
        request_timeout_s=20,
        **only_gpt,
    ) as (target, core):
        clients = [ServingClient(target) for _ in range(3)]
        try:
            running = clients[0].generate(PROMPT, max_tokens=20, seed=0)
            next(running)  # holds the one slot now
            waiting = clients[1].generate(PROMPT, max_tokens=20, seed=0)
            outcome: list = []

            def drain() -> None:  # the queued call ends OK, or CANCELLED when its channel closes
                try:
                    list(waiting)
                    outcome.append(grpc.StatusCode.OK)
                except grpc.RpcError as e:
                    outcome.append(e.code())

            t = threading.Thread(target=drain, daemon=True)
            t.start()
            limit = core._limits["generator"]
            for _ in range(100):  # until the second call is queued
                if limit.waiting == 1:
                    break
                time.sleep(0.05)
            assert (limit.running, limit.waiting) == (1, 1)
            code, details = _code(lambda: list(clients[2].generate(PROMPT, 4, seed=0)))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in details
        finally:
            for c in clients:
                c.close()
            t.join(10)
        assert outcome in ([grpc.StatusCode.OK], [grpc.StatusCode.CANCELLED])
    with (
        grpc_server(tiny_registry, load=_slow_load(0.3), request_timeout_s=0.5, **only_gpt) as (
            target,
            core,
        ),
        ServingClient(target) as client,
    ):
        code, details = _code(lambda: list(client.generate(PROMPT, max_tokens=20, seed=0)))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "0.5 s" in details
        for _ in range(50):  # the slot is given back once the stopped step ends
            if core._limits["generator"].running == 0:
                break
            time.sleep(0.05)
        assert core._limits["generator"].running == 0


def test_stubs_are_what_make_proto_generates(tmp_path):
    """The checked-in stubs equal a fresh protoc run (the Makefile's command, into tmp)."""
    rel = Path("layer6_serving/grpc/serving.proto")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        str(REPO),
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(REPO / rel),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    makefile = (REPO / "Makefile").read_text()
    assert "-I . --python_out=. --pyi_out=. --grpc_python_out=. " + str(rel) in makefile
    for name in ("serving_pb2.py", "serving_pb2.pyi", "serving_pb2_grpc.py"):
        fresh = (tmp_path / rel.parent / name).read_text()
        checked_in = (REPO / rel.parent / name).read_text()
        assert fresh == checked_in, f"{name} is stale: run `make proto`"
    assert "from layer6_serving.grpc import serving_pb2" in checked_in


def test_grpc_serve_without_a_registry_exits_2(tmp_path, capsys):
    from layer6_serving.__main__ import main

    assert main(["grpc-serve", "--registry", str(tmp_path / "nothing"), "--port", "0"]) == 2
    assert "make layer6" in capsys.readouterr().err
