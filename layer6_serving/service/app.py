"""The FastAPI app: routes over :class:`~layer6_serving.service.core.ServingCore`, and the guards
every request passes on its way in.

::

    request -> Observe   request id, metrics by route + status, latency; any unhandled error
                         becomes a JSON 500 with the request id (the traceback goes to the log,
                         never to the client)
            -> CORS      only ``Settings.cors_origins`` (none: only the app's own page)
            -> Auth      the API key on every route but the probes, the page and the docs
            -> BodyLimit 413 past ``max_body_bytes``: the declared Content-Length first, then
                         the bytes actually received (a chunked body declares nothing)
            -> routes    pydantic validation (422 naming the field), then the core

Routes: ``POST /v1/generate`` (JSON, or server-sent events with ``stream: true``), ``POST
/v1/sample`` (PNG grid or arrays), ``POST /v1/classify`` (multipart PNG/JPEG upload or a JSON
array), ``GET /v1/drift``, ``POST /admin/reload``, ``GET /healthz`` (the process is alive),
``GET /readyz`` (503 until every model is loaded), ``GET /metrics`` (Prometheus), ``/docs``
(OpenAPI), ``/`` (the page). Models load in the background after start-up, so the probes answer
at once and ``/readyz`` says when the models are there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from layer6_serving.registry import ModelRegistry
from layer6_serving.service import images, schemas, security
from layer6_serving.service.core import (
    FieldError,
    Loader,
    ModelUnavailable,
    QueueFull,
    RequestTimeout,
    ServingCore,
)
from layer6_serving.service.metrics import ServiceMetrics
from layer6_serving.service.settings import Settings

log = logging.getLogger("layer6_serving.service")
STATIC = Path(__file__).parent / "static"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# ------------------------------------------------------------------------------ middleware


async def _send_json(send: Send, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class Observe:
    """Request id, request metrics and the last-resort 500 (outermost middleware)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: list) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # answered before routing (401, 413): match it ourselves
            route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        return getattr(route, "path", "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        status, t0 = 500, time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_wrapper(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("request %s %s failed (request id %s)", scope["method"],
                          scope["path"], rid)  # fmt: skip
            if not started:
                body = {
                    "detail": "internal server error (logged under this request id)",
                    "request_id": rid,
                }
                await _send_json(send_wrapper, 500, body)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


class Auth:
    """401 unless the request carries the configured API key (public paths excepted)."""

    def __init__(self, app: ASGIApp, api_key: str | None, metrics: ServiceMetrics) -> None:
        self.app, self.api_key, self.metrics = app, api_key, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not security.is_public(scope["path"]):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            reason = security.check_key(self.api_key, security.presented_key(headers))
            if reason is not None:
                self.metrics.auth_failures.labels(reason).inc()
                what = "no API key given" if reason == "missing" else "wrong API key"
                return await _send_json(
                    send, 401,
                    {"detail": f"{what}: send it as 'X-API-Key: <key>' or "
                               "'Authorization: Bearer <key>'"},
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the counted body passes the limit: an HTTPException, so
    FastAPI's body parsing passes it on instead of calling it a malformed body (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is more than {limit} bytes, over the limit of "
                         f"{limit} (max_body_bytes)")  # fmt: skip


class BodyLimit:
    """413 for a body over ``limit`` bytes: declared (Content-Length) or counted as it streams."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def _refusal(self, size: str) -> dict:
        return {"detail": f"request body is {size} bytes, over the limit of {self.limit} "
                          "(max_body_bytes)"}  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, self._refusal(declared.decode()))
        seen, started = 0, False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as e:  # raised where no exception handler sat in between
            if not started:
                await _send_json(send, 413, {"detail": e.detail})


# ------------------------------------------------------------------------------ errors


def _validation_detail(errors: list[dict[str, Any]], prefix: tuple = ()) -> list[dict]:
    """Errors without their ``input`` (an echoed image would be kilobytes of numbers)."""
    return [{"type": e.get("type"), "loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg")}
            for e in errors]  # fmt: skip


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc.errors())}, 422)

    @app.exception_handler(FieldError)
    async def _field(request: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc.detail())}, 422)

    @app.exception_handler(images.ImageError)
    async def _image(request: Request, exc: images.ImageError) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["body", "file"], "msg": str(exc)}]
        return JSONResponse({"detail": detail}, exc.status)

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503, {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ModelUnavailable)
    async def _unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503, {"Retry-After": "5"})

    @app.exception_handler(RequestTimeout)
    async def _timeout(request: Request, exc: RequestTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 504)


# ------------------------------------------------------------------------------ routes


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _event_stream(request: Request, first: dict, events: AsyncIterator[dict]):
    """The SSE body: the ``start`` event already drawn, then the rest; errors after the headers
    went out become an ``error`` event (the status line is gone by then)."""
    try:
        yield _sse(first.pop("event"), first)
        async for event in events:
            yield _sse(event.pop("event"), event)
    except RequestTimeout as e:
        yield _sse("error", {"status": 504, "detail": str(e)})
    except Exception:
        rid = request.state.request_id
        log.exception("stream failed (request id %s)", rid)
        yield _sse("error", {"status": 500, "detail": "internal server error", "request_id": rid})
    finally:
        await events.aclose()  # frees the slot and stops generating, also on a disconnect


def _model_headers(name: str, version: int) -> dict[str, str]:
    return {"X-Model": name, "X-Model-Version": str(version)}


_CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary",
                                                   "description": "a 32x32 PNG or JPEG"}}},
            },
            "application/json": {"schema": schemas.ClassifyArrayRequest.model_json_schema()},
        },
    }
}  # fmt: skip


async def _classify_input(request: Request, settings: Settings) -> np.ndarray:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4, max_part_size=settings.max_body_bytes)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise FieldError("file", "expected a multipart field 'file' holding a PNG or JPEG")
        return images.decode_upload(await upload.read(), max_bytes=settings.max_body_bytes,
                                    max_pixels=settings.max_upload_pixels)  # fmt: skip
    if kind == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise FieldError("image", "the body is not valid JSON") from None
        try:
            return schemas.ClassifyArrayRequest.model_validate(body).image
        except pydantic.ValidationError as e:
            raise RequestValidationError(_validation_detail(e.errors(), ("body",))) from None
    raise FieldError(
        "content-type",
        f"content type {kind or 'none'!r}: expected multipart/form-data (a file upload) or "
        "application/json (an array)",
    )


def _add_routes(app: FastAPI, core: ServingCore, settings: Settings) -> None:  # noqa: C901
    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], response_model=schemas.ReadyResponse,
             responses={503: {"description": "models not loaded yet"}})  # fmt: skip
    async def readyz() -> JSONResponse:
        """Readiness: 200 once every configured model is loaded, else 503."""
        status = core.status()
        return JSONResponse(status, 200 if status["ready"] else 503)

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(core.metrics.render(), media_type=core.metrics.content_type)

    @app.post("/v1/generate", tags=["models"], response_model=schemas.GenerateResponse,
              responses={200: {"content": {"text/event-stream": {}}}})  # fmt: skip
    async def generate(req: schemas.GenerateRequest, request: Request) -> Any:
        """Continue a prompt; ``stream: true`` answers server-sent events: ``start``, one
        ``token`` per token (``{"text", "index"}``), then ``done`` (counts and seconds)."""
        if not req.stream:
            return await core.generate(req)
        events = core.generate_stream(req)
        first = await events.__anext__()  # validation and admission happen here: 4xx/503
        return StreamingResponse(
            _event_stream(request, first, events), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                     **_model_headers(first["model"], first["version"])},
        )  # fmt: skip

    @app.post("/v1/sample", tags=["models"], response_model=schemas.SampleArrayResponse,
              responses={200: {"content": {"image/png": {}}}})  # fmt: skip
    async def sample(req: schemas.SampleRequest) -> Any:
        """Digits of one class from the DDPM: a PNG grid, or uint8 arrays."""
        digits, loaded = await core.sample(req)
        name = core.slots["denoiser"].name
        if req.format == "png":
            return Response(images.grid_png(digits), media_type="image/png",
                            headers=_model_headers(name, loaded.version))  # fmt: skip
        return {"images": digits.tolist(), "label": req.label, "model": name,
                "version": loaded.version}  # fmt: skip

    @app.post("/v1/classify", tags=["models"], response_model=schemas.ClassifyResponse,
              openapi_extra=_CLASSIFY_BODY)  # fmt: skip
    async def classify(request: Request) -> dict[str, Any]:
        """Classify one CIFAR-10 image: a PNG/JPEG upload (field ``file``) or a JSON array."""
        image = await _classify_input(request, settings)
        probs, loaded = await core.classify(image)
        row = probs[0]
        label = int(np.argmax(row))
        return {"label": label, "class_name": loaded.runtime.classes[label],
                "probabilities": [float(p) for p in row],
                "classes": list(loaded.runtime.classes),
                "model": core.slots["classifier"].name, "version": loaded.version}  # fmt: skip

    @app.get("/v1/drift", tags=["monitoring"])
    async def drift() -> dict[str, Any]:
        """Each monitored model's served-input drift against its training reference."""
        return core.drift()

    @app.post("/admin/reload", tags=["admin"], response_model=schemas.ReloadResponse)
    async def reload(name: str | None = None) -> dict[str, Any]:
        """Load the registry's newest version of every served model (or ``name``), swapping it
        in atomically: requests in flight finish on the old version."""
        return await core.reload(name)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


# ------------------------------------------------------------------------------ the app


def create_app(
    settings: Settings | None = None,
    *,
    registry: ModelRegistry | None = None,
    load: Loader | None = None,
    metrics: ServiceMetrics | None = None,
) -> FastAPI:
    """The service for ``settings`` (default: from the environment). ``load`` replaces
    :func:`layer6_serving.runtime.load` (tests); the core is ``app.state.core``."""
    settings = settings or Settings.from_env()
    extra = {} if load is None else {"load": load}
    core = ServingCore(settings, registry=registry, metrics=metrics, **extra)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await core.start()
        try:
            yield
        finally:
            await core.stop()

    app = FastAPI(
        title="dlstack serving",
        version="1",
        description="Layer 6 of dlstack: the GPT, the DDPM and the CIFAR-10 ResNet of layer 4, "
        "from the model registry.",
        lifespan=lifespan,
    )
    app.state.core, app.state.settings, app.state.metrics = core, settings, core.metrics
    _install_error_handlers(app)
    _add_routes(app, core, settings)
    # added innermost first: a request meets Observe, CORS, Auth, BodyLimit, then the routes
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Auth, api_key=settings.api_key, metrics=core.metrics)
    app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                       allow_methods=["GET", "POST"], allow_headers=["content-type",
                       "x-api-key", "authorization"], expose_headers=["x-request-id",
                       "x-model", "x-model-version"])  # fmt: skip
    app.add_middleware(Observe, metrics=core.metrics, routes=app.router.routes)
    return app
