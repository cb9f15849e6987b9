"""The gRPC server: ``serving.proto``'s three calls answered by the REST app's
:class:`~layer6_serving.service.core.ServingCore`.

A gRPC call here is a translation, nothing more: the protocol-buffer request becomes the same
pydantic request the REST route builds (so the same field bounds apply), the core does the work
(the same micro-batcher, concurrency limit, deadline and model slot), and the core's answer or
exception becomes a message or a status code:

=====================================================  =====================
what happened                                          gRPC status
=====================================================  =====================
a field out of range (pydantic, ``FieldError``, an     ``INVALID_ARGUMENT``,
image that is not one)                                 details ``<field>: ...``
API key missing or wrong (``x-api-key`` or             ``UNAUTHENTICATED``
``authorization: Bearer`` metadata)
the queue is full (``QueueFull``)                      ``RESOURCE_EXHAUSTED``
the model is not loaded (``ModelUnavailable``)         ``UNAVAILABLE``
past ``request_timeout_s`` (``RequestTimeout``)        ``DEADLINE_EXCEEDED``
anything else                                          ``INTERNAL`` + request id
=====================================================  =====================

No traceback ever reaches a client: an unexpected error is logged with its request id and the
client gets the id only. A client that cancels (or whose own deadline passes) cancels the
handler's task, which closes the core's token stream and frees its concurrency slot.

It uses ``grpc.aio``: the handlers are coroutines on the same event loop as the core's batcher,
so no thread hops between transport and core. Calls and their status codes are counted in
``dlstack_grpc_requests_total{method, code}`` on the core's Prometheus registry
(``--metrics-port`` serves it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import grpc
import numpy as np
import pydantic
from prometheus_client import Counter, Histogram, start_http_server

from layer6_serving.grpc import serving_pb2 as pb
from layer6_serving.grpc import serving_pb2_grpc as pb_grpc
from layer6_serving.service.batching import QueueFull
from layer6_serving.service.core import ModelUnavailable, RequestTimeout, ServingCore
from layer6_serving.service.images import ImageError, decode_upload, from_array
from layer6_serving.service.schemas import FieldError, GenerateRequest
from layer6_serving.service.security import check_key, presented_key
from layer6_serving.service.settings import BACKENDS, Settings

DEFAULT_PORT = 50051
log = logging.getLogger("layer6_serving.grpc")


class Abort(Exception):
    """A request refused with ``code``; ``details`` is what the client reads."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def _validation_details(e: pydantic.ValidationError) -> str:
    """``field: message`` for each bad field of a pydantic error."""
    parts = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{field}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def to_abort(e: Exception) -> Abort | None:
    """The status a core/validation exception maps to (``None``: an unexpected error)."""
    if isinstance(e, Abort):
        return e
    if isinstance(e, pydantic.ValidationError):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, _validation_details(e))
    if isinstance(e, FieldError):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    if isinstance(e, QueueFull):
        return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
    if isinstance(e, ModelUnavailable):
        return Abort(grpc.StatusCode.UNAVAILABLE, str(e))
    if isinstance(e, RequestTimeout):
        return Abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(e))
    return None


def generate_request(msg: pb.GenerateRequest) -> GenerateRequest:
    """The REST app's request model from the protocol-buffer one (unset optionals: defaults)."""
    fields: dict[str, Any] = {"prompt": msg.prompt}
    for name in ("max_tokens", "temperature", "top_k", "top_p", "seed"):
        if msg.HasField(name):
            fields[name] = getattr(msg, name)
    return GenerateRequest(**fields)


def classify_input(msg: pb.ClassifyRequest, settings: Settings) -> np.ndarray:
    """float32 (3, 32, 32) in [0, 1] from the request's ``image`` bytes or ``array``."""
    which = msg.WhichOneof("input")
    if which == "image":
        try:
            return decode_upload(
                msg.image, max_bytes=settings.max_body_bytes, max_pixels=settings.max_upload_pixels
            )
        except ImageError as e:
            raise FieldError("image", str(e)) from None
    if which == "array":
        values, shape = np.asarray(msg.array.values, np.float32), tuple(msg.array.shape)
        if not shape or any(d < 1 for d in shape) or int(np.prod(shape)) != values.size:
            raise FieldError(
                "array",
                f"array has {values.size} values and shape {shape}: "
                "expected a (3, 32, 32) or (32, 32, 3) shape holding them all",
            )
        try:
            return from_array(values.reshape(shape))
        except ImageError as e:
            raise FieldError("array", str(e)) from None
    raise FieldError("input", "the request carries neither an image nor an array")


class ServingServicer(pb_grpc.ServingServicer):
    """``Generate``, ``Classify``, ``Health`` over a started :class:`ServingCore`."""

    def __init__(self, core: ServingCore, api_key: str | None = None) -> None:
        self.core = core
        self.api_key = api_key
        r = core.metrics.registry
        self.calls = Counter(
            "dlstack_grpc_requests", "gRPC calls answered", ["method", "code"], registry=r
        )
        self.latency = Histogram(
            "dlstack_grpc_request_duration_seconds",
            "Time from call to the end of the answer",
            ["method"],
            registry=r,
        )

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        reason = check_key(self.api_key, presented_key(metadata))
        if reason is not None:
            self.core.metrics.auth_failures.labels(reason).inc()
            raise Abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"API key {reason}: send it as 'x-api-key' metadata",
            )

    async def _refuse(
        self, method: str, e: Exception, context: grpc.aio.ServicerContext
    ) -> NoReturn:
        """Count the call and end it with the status ``e`` maps to (``context.abort`` raises)."""
        abort = to_abort(e)
        if abort is None:
            request_id = uuid.uuid4().hex[:12]
            log.exception("gRPC %s failed (request id %s)", method, request_id)
            abort = Abort(
                grpc.StatusCode.INTERNAL,
                f"internal error (request id {request_id}); the server log has it",
            )
        self.calls.labels(method, abort.code.name).inc()
        await context.abort(abort.code, abort.details)

    def _done(self, method: str, t0: float) -> None:
        self.calls.labels(method, grpc.StatusCode.OK.name).inc()
        self.latency.labels(method).observe(time.perf_counter() - t0)

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Token]:
        t0 = time.perf_counter()
        try:
            self._authorize(context)
            async for event in self.core.generate_stream(generate_request(request)):
                if event["event"] == "token":
                    yield pb.Token(text=event["text"], index=event["index"])
                elif event["event"] == "done":
                    yield pb.Token(done=True, tokens=event["tokens"], seconds=event["seconds"])
        except asyncio.CancelledError:
            self.calls.labels("Generate", grpc.StatusCode.CANCELLED.name).inc()
            raise
        except Exception as e:
            await self._refuse("Generate", e, context)
        self._done("Generate", t0)

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassifyReply:
        t0 = time.perf_counter()
        try:
            self._authorize(context)
            probs, loaded = await self.core.classify(classify_input(request, self.core.settings))
        except Exception as e:
            await self._refuse("Classify", e, context)
        p = probs[0]
        label = int(np.argmax(p))
        self._done("Classify", t0)
        return pb.ClassifyReply(
            label=label,
            class_name=loaded.runtime.classes[label],
            probabilities=p.tolist(),
            model=loaded.runtime.name,
            version=loaded.version,
        )

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthReply:
        status = self.core.status()
        models = [
            pb.ModelInfo(kind=m["kind"], name=name, version=m["version"], backend=m["backend"])
            for name, m in sorted(status["models"].items())
        ]
        self.calls.labels("Health", grpc.StatusCode.OK.name).inc()
        return pb.HealthReply(live=True, ready=status["ready"], models=models)


async def serve(
    core: ServingCore, port: int = DEFAULT_PORT, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, int]:
    """Start a gRPC server for a started ``core`` on ``host:port`` (0: a free port); returns the
    server and the port it bound. The API key and the message size limit are the core's."""
    settings = core.settings
    options = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_ServingServicer_to_server(ServingServicer(core, settings.api_key), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC server to {host}:{port}")
    await server.start()
    return server, bound


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m layer6_serving grpc-serve",
        description="Serve the registry's models over gRPC (layer6_serving/grpc/serving.proto). "
        "Every other setting comes from DLSTACK_* variables, as for `serve`; the API key from "
        "DLSTACK_API_KEY or DLSTACK_API_KEY_FILE.",
    )
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--registry", type=Path, default=None, help="default runs/registry")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="default onnx")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per model")
    p.add_argument(
        "--metrics-port", type=int, default=None, help="also serve Prometheus /metrics on this port"
    )
    return p.parse_args(argv)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    core = ServingCore(settings)
    await core.start()
    server, port = await serve(core, args.port, args.host)
    print(f"gRPC on {args.host}:{port} (registry {settings.registry}, backend {settings.backend})")
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, args.host, registry=core.metrics.registry)
        print(f"metrics on http://{args.host}:{args.metrics_port}/metrics")
    await core.wait_loaded()
    status = core.status()
    for name, m in status["models"].items():
        print(f"  {m['kind']}: {name} v{m['version']}")
    for name, error in status["errors"].items():
        print(f"  {name} NOT loaded: {error}\n  (export the models: make layer6)", file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=5)
    await core.stop()
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env(
            registry=args.registry, backend=args.backend, threads=args.threads
        )
    except ValueError as e:
        print(f"grpc-serve: {e}", file=sys.stderr)
        return 2
    if not settings.registry.is_dir():
        print(
            f"grpc-serve: no model registry at {settings.registry}: export the models first "
            "(make layer6, or python -m layer6_serving export)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(settings, args))
