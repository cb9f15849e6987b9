"""Dynamic micro-batching: concurrent requests share one model call.

A model call has a fixed cost (dispatch, thread start, weights through the cache) plus a cost per
item; on a CPU or a GPU the per-item part of a batch of 8 is much less than 8 calls. A server
sees requests one at a time, so it *makes* batches: the first request to arrive waits at most
``max_wait_ms`` for others, and as soon as ``max_batch`` are queued (or the wait is over) they
run together in one call, in a worker thread so the event loop keeps accepting requests::

    t=0   a arrives  -> a batch opens, deadline t+max_wait
    t=1   b, c       -> join it
    t=5   deadline   -> fn([a, b, c]) in a thread; each caller gets its own row back

The trade is latency for throughput: a lone request pays up to ``max_wait_ms`` extra, a busy
server runs far fewer, fuller calls. ``max_batch=1`` turns it off (no wait, one call each).

The queue is bounded: past ``max_queue`` waiting items :meth:`MicroBatcher.submit` raises
:class:`QueueFull` at once (the service answers 503 with ``Retry-After``): shedding load early
beats letting every request time out. A caller that gives up (timeout, disconnect) is skipped
when its batch is formed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` items already; try again after ``retry_after_s``."""

    def __init__(self, what: str, limit: int, retry_after_s: int = 1) -> None:
        super().__init__(f"{what} queue is full ({limit} waiting); retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Item(Generic[T]):
    value: T
    future: asyncio.Future


class MicroBatcher(Generic[T, R]):
    """Group :meth:`submit` calls into batches for ``fn(items) -> results`` (one result each).

    ``fn`` is a plain function run in a worker thread; ``on_batch(size)`` is told each batch's
    size and ``on_depth(n)`` the queue depth whenever it changes (metrics). Use it as
    ``async with MicroBatcher(...)``, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
        name: str = "model",
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(
                f"MicroBatcher needs max_batch >= 1, max_queue >= 1, max_wait_ms >= 0; got "
                f"{max_batch}, {max_queue}, {max_wait_ms}"
            )
        self.fn, self.name = fn, name
        self.max_batch, self.max_queue = max_batch, max_queue
        self.max_wait_s = max_wait_ms / 1000
        self._on_batch = on_batch or (lambda n: None)
        self._on_depth = on_depth or (lambda n: None)
        self._pending: collections.deque[_Item[T]] = collections.deque()
        self._arrived = asyncio.Event()  # something is pending
        self._full = asyncio.Event()  # a whole batch is pending
        self._worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return len(self._pending)

    async def __aenter__(self) -> MicroBatcher[T, R]:
        self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker; callers still waiting get a RuntimeError."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError(f"{self.name} batcher stopped"))
        self._on_depth(0)

    async def submit(self, value: T) -> R:
        """Queue ``value`` and wait for its result; :class:`QueueFull` when the queue is full."""
        if self._worker is None:
            raise RuntimeError(f"{self.name} batcher is not running (call start())")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(self.name, self.max_queue)
        item = _Item(value, asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._on_depth(len(self._pending))
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await item.future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if len(self._pending) < self.max_batch and self.max_wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
            batch = self._take()
            if batch:
                await self._call(batch)

    def _take(self) -> list[_Item[T]]:
        """Up to ``max_batch`` pending items whose callers are still waiting."""
        batch: list[_Item[T]] = []
        while self._pending and len(batch) < self.max_batch:
            item = self._pending.popleft()
            if not item.future.done():  # a caller that gave up is skipped
                batch.append(item)
        if len(self._pending) < self.max_batch:
            self._full.clear()
        if not self._pending:
            self._arrived.clear()
        self._on_depth(len(self._pending))
        return batch

    async def _call(self, batch: list[_Item[T]]) -> None:
        self._on_batch(len(batch))
        try:
            results = await asyncio.to_thread(self.fn, [item.value for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{self.name} batch function returned {len(results)} results "
                    f"for {len(batch)} items"
                )
        except Exception as e:  # every caller of the batch gets the error, the worker lives on
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(e)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)


class ConcurrencyLimit:
    """At most ``slots`` jobs run at once, at most ``max_queue`` wait; more get :class:`QueueFull`.

    For work that does not batch (a token stream, a diffusion sampling run): ``async with
    limit.slot():`` holds a slot for the job's whole life, released however the job ends
    (finished, failed, timed out, client gone). ``on_change(running, waiting)`` feeds the gauges.
    """

    def __init__(
        self,
        slots: int,
        max_queue: int,
        name: str = "jobs",
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if slots < 1 or max_queue < 0:
            raise ValueError(f"ConcurrencyLimit needs slots >= 1, max_queue >= 0; got {slots}, "
                             f"{max_queue}")  # fmt: skip
        self.slots, self.max_queue, self.name = slots, max_queue, name
        self._sem = asyncio.Semaphore(slots)
        self.running = 0
        self.waiting = 0
        self._on_change = on_change or (lambda r, w: None)

    @contextlib.asynccontextmanager
    async def slot(self):
        if self.running >= self.slots and self.waiting >= self.max_queue:
            raise QueueFull(self.name, self.max_queue)
        self.waiting += 1
        self._on_change(self.running, self.waiting)
        try:
            await self._sem.acquire()
            self.running += 1
        finally:
            self.waiting -= 1
            self._on_change(self.running, self.waiting)
        try:
            yield
        finally:
            self.running -= 1
            self._sem.release()
            self._on_change(self.running, self.waiting)
