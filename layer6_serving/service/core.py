"""The serving core: models in slots, micro-batching, limits and hot reload, with no transport.

REST (:mod:`~layer6_serving.service.app`) and gRPC (:mod:`layer6_serving.grpc`) both call
:class:`ServingCore`, so they cannot disagree on what a request means, which model version
answers it or when it is refused. Requests arrive as the pydantic models of
:mod:`~layer6_serving.service.schemas`; errors leave as exceptions each transport maps to its
status codes:

=============================  ==================  ======================
exception                      HTTP                gRPC
=============================  ==================  ======================
``pydantic.ValidationError``,  422 naming the      ``INVALID_ARGUMENT``
:class:`FieldError`            field
:class:`QueueFull`             503 + Retry-After   ``RESOURCE_EXHAUSTED``
:class:`ModelUnavailable`      503                 ``UNAVAILABLE``
:class:`RequestTimeout`        504                 ``DEADLINE_EXCEEDED``
=============================  ==================  ======================

**Slots and the atomic swap.** Each served kind has a slot holding ``Loaded(runtime, version)``,
an immutable pair. A request reads the slot *once* and uses that pair to the end, so a reload
that replaces the pair (one reference assignment: atomic under the GIL and on one event loop)
never changes a request midway: in-flight requests finish on the old runtime, new ones get the
new one, and the old one is freed when its last request lets go. The new version is loaded in a
thread *before* the swap, so serving never pauses. A reload is :meth:`ServingCore.reload`
(``/admin/reload``) or the poller every ``reload_interval_s``.

**Batching and limits.** Classify requests go through a
:class:`~layer6_serving.service.batching.MicroBatcher` (a batch may hold requests that read the
slot before and after a swap: it is split by runtime, one call each). Generation streams and
sampling jobs do not batch (each has its own prompt, seed and length); they hold a slot of a
:class:`~layer6_serving.service.batching.ConcurrencyLimit` for their whole life, released however
they end. A stream whose consumer goes away (a client disconnect closes the async generator)
stops asking the model for tokens at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from layer6_serving import runtime as runtime_mod
from layer6_serving.monitoring.monitor import InputMonitor
from layer6_serving.registry import ModelRegistry, RegistryError
from layer6_serving.service.batching import ConcurrencyLimit, MicroBatcher, QueueFull
from layer6_serving.service.metrics import ServiceMetrics
from layer6_serving.service.schemas import FieldError, GenerateRequest, SampleRequest
from layer6_serving.service.settings import Settings

__all__ = ["FieldError", "Loaded", "ModelUnavailable", "QueueFull", "RequestTimeout",
           "ServingCore"]  # fmt: skip

log = logging.getLogger("layer6_serving.service")
Loader = Callable[..., Any]  # runtime.load's signature: (registry, name, version, backend, threads)
_END = object()


class ModelUnavailable(RuntimeError):
    """The kind is not served, or its model is not loaded (yet)."""


class RequestTimeout(TimeoutError):
    """The request ran past ``request_timeout_s``."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} took longer than the limit of {seconds:g} s and was stopped")


@dataclass(frozen=True)
class Loaded:
    """One loaded model version: what a request holds on to."""

    runtime: Any
    version: int


class ModelSlot:
    """The model serving one kind: its registry name, what is loaded, its drift monitor."""

    def __init__(self, kind: str, name: str, monitor: InputMonitor | None) -> None:
        self.kind, self.name, self.monitor = kind, name, monitor
        self.current: Loaded | None = None
        self.error: str | None = None


class ServingCore:
    """Everything a transport needs: ``classify``, ``generate_stream``/``generate``, ``sample``,
    ``reload``, ``status``, ``drift``. Call :meth:`start` (on the event loop) then :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry | None = None,
        metrics: ServiceMetrics | None = None,
        load: Loader = runtime_mod.load,
    ) -> None:
        self.settings = settings
        self.registry = registry or ModelRegistry(settings.registry)
        self.metrics = metrics or ServiceMetrics()
        self._load = load
        self.slots = {kind: ModelSlot(kind, name, self._monitor(kind, name))
                      for kind, name in settings.models().items()}  # fmt: skip
        self._executor = ThreadPoolExecutor(settings.max_concurrency + 1, "dlstack-serve")
        self._limits = {kind: self._limit(kind) for kind in ("generator", "denoiser")}
        self._batcher: MicroBatcher | None = None
        self._tasks: list[asyncio.Task] = []
        self._reload_lock: asyncio.Lock | None = None
        self._loaded = asyncio.Event()

    def _monitor(self, kind: str, name: str) -> InputMonitor | None:
        if kind == "denoiser":
            return None  # its input is a class label: nothing to drift
        return InputMonitor(None, self.metrics.registry, self.settings.drift_window, name)

    def _limit(self, kind: str) -> ConcurrencyLimit:
        gauge = self.metrics.inflight.labels(kind)
        return ConcurrencyLimit(self.settings.max_concurrency, self.settings.max_queue, kind,
                                on_change=lambda running, waiting: gauge.set(running))  # fmt: skip

    # ---------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start batching and load every model in the background (``ready`` tells when)."""
        self._reload_lock = asyncio.Lock()
        if "classifier" in self.slots:
            name = self.slots["classifier"].name
            s = self.settings
            self._batcher = MicroBatcher(
                self._classify_batch, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms,
                max_queue=s.max_queue, name=name,
                on_batch=self.metrics.batch_size.labels(name).observe,
                on_depth=self.metrics.queue_depth.labels(name).set,
            )  # fmt: skip
            self._batcher.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._load_then_poll()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._batcher is not None:
            await self._batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def wait_loaded(self) -> None:
        """Return once the first load attempt of every model has finished (ok or not)."""
        await self._loaded.wait()

    async def _load_then_poll(self) -> None:
        await self.reload()
        self._loaded.set()
        interval = self.settings.reload_interval_s
        while interval > 0:
            await asyncio.sleep(interval)
            await self.reload()

    @property
    def ready(self) -> bool:
        return all(slot.current is not None for slot in self.slots.values())

    def status(self) -> dict[str, Any]:
        """What /readyz reports: ready, backend, loaded models, load errors."""
        return {
            "ready": self.ready,
            "backend": self.settings.backend,
            "models": {s.name: {"kind": s.kind, "version": s.current.version,
                                "backend": self.settings.backend}
                       for s in self.slots.values() if s.current is not None},
            "errors": {s.name: s.error for s in self.slots.values() if s.error},
        }  # fmt: skip

    # ---------------------------------------------------------------------- hot reload

    async def reload(self, name: str | None = None) -> dict[str, Any]:
        """Load the newest version of each served model (or of ``name``) that is not loaded yet,
        and swap it in. Returns ``{"swapped": {name: [old, new]}, "unchanged": [...],
        "errors": {name: message}}``; a failed load leaves the old version serving."""
        slots = [s for s in self.slots.values() if name is None or s.name == name]
        if name is not None and not slots:
            served = sorted(s.name for s in self.slots.values())
            raise FieldError("name", f"model {name!r} is not served (served: {served})", name)
        assert self._reload_lock is not None, "call start() first"
        out: dict[str, Any] = {"swapped": {}, "unchanged": [], "errors": {}}
        async with self._reload_lock:
            for slot in slots:
                await self._reload_slot(slot, out)
        return out

    async def _reload_slot(self, slot: ModelSlot, out: dict[str, Any]) -> None:
        try:
            latest = self.registry.latest(slot.name)
            if slot.current is not None and slot.current.version == latest:
                out["unchanged"].append(slot.name)
                return
            loaded = await asyncio.to_thread(self._load_version, slot, latest)
        except Exception as e:  # the old version keeps serving; the error is reported
            slot.error = f"{type(e).__name__}: {e}"
            out["errors"][slot.name] = slot.error
            self.metrics.reloads.labels(slot.name, "failed").inc()
            log.warning("loading %s failed: %s", slot.name, slot.error)
            return
        old = slot.current.version if slot.current else None
        slot.current, slot.error = loaded, None  # the swap
        out["swapped"][slot.name] = [old, loaded.version]
        self.metrics.model_version.labels(slot.name, slot.kind, self.settings.backend).set(
            loaded.version
        )
        self.metrics.reloads.labels(slot.name, "swapped").inc()
        log.info("serving %s v%s (was v%s, %s)", slot.name, loaded.version, old,
                 self.settings.backend)  # fmt: skip

    def _load_version(self, slot: ModelSlot, version: int) -> Loaded:
        manifest = self.registry.manifest(slot.name, version)
        if manifest.get("kind") != slot.kind:
            raise RegistryError(f"{slot.name} v{version} is a {manifest.get('kind')!r} model, "
                                f"configured to serve as the {slot.kind}")  # fmt: skip
        model = self._load(self.registry, slot.name, version, self.settings.backend,
                           self.settings.threads)  # fmt: skip
        if slot.monitor is not None:
            slot.monitor.set_reference(manifest.get("reference"), version)
        return Loaded(model, version)

    # ---------------------------------------------------------------------- requests

    def loaded(self, kind: str) -> Loaded:
        """What the ``kind`` slot serves now (read once per request); ModelUnavailable if none."""
        slot = self.slots.get(kind)
        if slot is None:
            raise ModelUnavailable(f"this server does not serve a {kind} model")
        current = slot.current
        if current is None:
            why = f": {slot.error}" if slot.error else " yet"
            raise ModelUnavailable(f"the {kind} model {slot.name!r} is not loaded{why}")
        return current

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str):
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                yield
        except TimeoutError:
            raise RequestTimeout(what, self.settings.request_timeout_s) from None

    async def classify(self, images: np.ndarray) -> tuple[np.ndarray, Loaded]:
        """float32 (N, 3, S, S) or (3, S, S) in [0, 1] -> probabilities (N, classes), the model."""
        loaded = self.loaded("classifier")
        images = np.asarray(images, dtype=np.float32)
        images = images[None] if images.ndim == 3 else images
        size = loaded.runtime.image_size
        if images.ndim != 4 or images.shape[1:] != (3, size, size) or len(images) == 0:
            raise FieldError("image", f"image batch has shape {images.shape}: expected "
                             f"(N, 3, {size}, {size}) or (3, {size}, {size})")  # fmt: skip
        assert self._batcher is not None, "call start() first"
        async with self._deadline("classification"):
            probs = await self._batcher.submit((loaded, images))
        return probs, loaded

    def _classify_batch(self, items: list[tuple[Loaded, np.ndarray]]) -> list[np.ndarray]:
        """One predict per runtime in the batch (two only while a swap is happening)."""
        results: list[np.ndarray] = [np.empty(0)] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (loaded, _) in enumerate(items):
            groups.setdefault(id(loaded), []).append(i)
        monitor = self.slots["classifier"].monitor
        for idx in groups.values():
            x = np.concatenate([items[i][1] for i in idx])
            probs = items[idx[0]][0].runtime.predict(x)
            if monitor is not None:
                monitor.observe_images(x, probs)
            bounds = np.cumsum([0] + [len(items[i][1]) for i in idx])
            for j, i in enumerate(idx):
                results[i] = probs[bounds[j] : bounds[j + 1]]
        return results

    def _check_generate(self, req: GenerateRequest, loaded: Loaded) -> list[int]:
        gen = loaded.runtime
        if req.max_tokens > gen.context:
            raise FieldError("max_tokens", f"max_tokens is {req.max_tokens}, expected 1.."
                             f"{gen.context} (the model's context)", req.max_tokens)  # fmt: skip
        ids = gen.encode(req.prompt)
        if len(ids) > gen.context:
            raise FieldError("prompt", f"the prompt is {len(ids)} tokens, expected at most "
                             f"{gen.context} (the model's context)", len(ids))  # fmt: skip
        return ids

    async def generate_stream(self, req: GenerateRequest) -> AsyncIterator[dict[str, Any]]:
        """Events: ``start`` (model, version, prompt_tokens) once the request is accepted, one
        ``token`` (text, index) per generated token, then ``done`` (tokens, seconds). Errors
        before ``start`` are the request's (422/503); after it, the stream's (RequestTimeout)."""
        t0 = time.perf_counter()
        loaded = self.loaded("generator")
        ids = self._check_generate(req, loaded)
        name = self.slots["generator"].name
        async with self._limits["generator"].slot():
            pieces = loaded.runtime.stream(req.prompt, req.max_tokens, req.temperature,
                                           req.top_k, req.top_p, req.seed)  # fmt: skip
            monitor = self.slots["generator"].monitor
            if monitor is not None:
                monitor.observe_prompt(ids)
            yield {"event": "start", "model": name, "version": loaded.version,
                   "prompt_tokens": len(ids)}  # fmt: skip
            n = 0
            async for piece in self._pieces(pieces, t0):
                if n == 0:
                    self.metrics.first_token.labels(name).observe(time.perf_counter() - t0)
                self.metrics.tokens.labels(name).inc()
                yield {"event": "token", "text": piece, "index": n}
                n += 1
            yield {"event": "done", "tokens": n, "prompt_tokens": len(ids),
                   "seconds": round(time.perf_counter() - t0, 4)}  # fmt: skip

    async def _pieces(self, pieces: Iterator[str], t0: float) -> AsyncIterator[str]:
        """The runtime's token iterator, one ``next`` per worker-thread call, under the deadline.
        However this ends (done, timeout, the consumer gone) the iterator is closed, after its
        running step if one is running (a generator cannot be closed while it executes)."""
        deadline = t0 + self.settings.request_timeout_s
        job: Future | None = None
        try:
            while True:
                job = self._executor.submit(next, pieces, _END)
                try:
                    piece = await asyncio.wait_for(asyncio.wrap_future(job),
                                                   deadline - time.perf_counter())  # fmt: skip
                except TimeoutError:
                    raise RequestTimeout("generation", self.settings.request_timeout_s) from None
                if piece is _END:
                    return
                yield piece
        finally:
            if job is not None and not job.done():
                job.add_done_callback(lambda _: _close(pieces))
            else:
                _close(pieces)

    async def generate(self, req: GenerateRequest) -> dict[str, Any]:
        """The whole continuation at once: text, tokens, prompt_tokens, model, version, seconds."""
        text: list[str] = []
        meta: dict[str, Any] = {}
        async for event in self.generate_stream(req):
            if event["event"] == "token":
                text.append(event["text"])
            else:
                meta.update(event)
        meta.pop("event")
        return {"text": "".join(text), **meta}

    async def sample(self, req: SampleRequest) -> tuple[np.ndarray, Loaded]:
        """uint8 digits (count, H, W) of class ``req.label`` by ``req.steps`` DDIM steps."""
        loaded = self.loaded("denoiser")
        den = loaded.runtime
        if req.count > self.settings.max_samples:
            raise FieldError("count", f"count is {req.count}, expected 1.."
                             f"{self.settings.max_samples}", req.count)  # fmt: skip
        if req.steps > den.timesteps:
            raise FieldError("steps", f"steps is {req.steps}, expected 1..{den.timesteps} "
                             "(the model's timesteps)", req.steps)  # fmt: skip
        if req.label >= den.num_classes:
            raise FieldError("class", f"class is {req.label}, expected 0..{den.num_classes - 1}",
                             req.label)  # fmt: skip
        async with self._deadline("sampling"), self._limits["denoiser"].slot():
            loop = asyncio.get_running_loop()
            digits = await loop.run_in_executor(
                self._executor, den.sample, [req.label] * req.count, req.steps, req.seed
            )
        return digits, loaded

    def drift(self) -> dict[str, Any]:
        """Each monitored model's drift report (what ``/v1/drift`` returns)."""
        return {s.name: s.monitor.report() for s in self.slots.values() if s.monitor is not None}


def _close(pieces: Iterator[str]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()
