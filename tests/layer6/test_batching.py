"""MicroBatcher and ConcurrencyLimit: batches form, results go back to their callers, the queue
bound sheds load, failures reach every caller of the batch, and slots are always released."""

from __future__ import annotations

import asyncio
import threading

import pytest

from layer6_serving.service.batching import ConcurrencyLimit, MicroBatcher, QueueFull


def _doubler(sizes: list[int]):
    def fn(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return [2 * x for x in items]

    return fn


@pytest.mark.parametrize("max_batch", [1, 3, 8])
def test_concurrent_submits_are_batched_and_answered_in_order(max_batch):
    sizes: list[int] = []

    async def main():
        async with MicroBatcher(_doubler(sizes), max_batch=max_batch, max_wait_ms=50) as b:
            return await asyncio.gather(*(b.submit(i) for i in range(20)))

    results = asyncio.run(main())
    assert results == [2 * i for i in range(20)]  # every caller gets its own row
    assert sum(sizes) == 20 and max(sizes) <= max_batch
    if max_batch == 1:
        assert sizes == [1] * 20  # batching off: one call per item
    else:  # all 20 were queued before the first deadline: only full batches, then the rest
        assert sizes == [max_batch] * (20 // max_batch) + ([20 % max_batch] if 20 % max_batch
                                                           else [])  # fmt: skip


def test_a_lone_item_runs_after_the_wait_and_reports_depth():
    depths: list[int] = []
    batches: list[int] = []

    async def main():
        async with MicroBatcher(lambda xs: xs, max_batch=8, max_wait_ms=20,
                                on_depth=depths.append, on_batch=batches.append) as b:  # fmt: skip
            return await b.submit("x")

    assert asyncio.run(main()) == "x"
    assert batches == [1]
    assert depths[0] == 1 and depths[-1] == 0


def test_full_queue_raises_queue_full_at_once():
    release = threading.Event()

    def slow(items):
        release.wait(5)
        return items

    async def main():
        async with MicroBatcher(slow, max_batch=1, max_wait_ms=0, max_queue=2) as b:
            first = asyncio.ensure_future(b.submit(0))
            await asyncio.sleep(0.05)  # the worker has taken item 0 and is blocked in slow()
            queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
            await asyncio.sleep(0.01)
            assert b.depth == 2
            with pytest.raises(QueueFull, match=r"queue is full \(2 waiting\)") as info:
                await b.submit(3)
            assert info.value.retry_after_s >= 1
            release.set()
            return await asyncio.gather(first, *queued)

    assert asyncio.run(main()) == [0, 1, 2]


def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on():
    calls: list[list[int]] = []

    def fn(items):
        calls.append(items)
        if -1 in items:
            raise RuntimeError("planted")
        return items

    async def main():
        async with MicroBatcher(fn, max_batch=4, max_wait_ms=20) as b:
            res = await asyncio.gather(b.submit(-1), b.submit(5), return_exceptions=True)
            after = await b.submit(7)
        return res, after

    res, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "planted" in str(r) for r in res)
    assert after == 7 and calls[-1] == [7]


def test_a_caller_that_gave_up_is_skipped():
    release = threading.Event()
    seen: list[list[int]] = []

    def fn(items):
        seen.append(list(items))
        release.wait(5)
        return items

    async def main():
        async with MicroBatcher(fn, max_batch=1, max_wait_ms=0, max_queue=8) as b:
            first = asyncio.ensure_future(b.submit(0))
            await asyncio.sleep(0.05)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(b.submit(1), 0.01)  # gives up while queued
            last = asyncio.ensure_future(b.submit(2))
            release.set()
            return await asyncio.gather(first, last)

    assert asyncio.run(main()) == [0, 2]
    assert seen == [[0], [2]]  # item 1 never reached the model


def test_wrong_result_count_is_an_error_not_a_silent_misroute():
    async def main():
        async with MicroBatcher(lambda xs: xs[:1], max_batch=4, max_wait_ms=20) as b:
            return await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)

    res = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "2 items" in str(r) for r in res)


def test_bad_arguments_and_submit_before_start():
    with pytest.raises(ValueError, match="max_batch >= 1"):
        MicroBatcher(lambda xs: xs, max_batch=0)

    async def main():
        b = MicroBatcher(lambda xs: xs)
        with pytest.raises(RuntimeError, match="not running"):
            await b.submit(1)

    asyncio.run(main())


def test_concurrency_limit_slots_queue_and_release():
    changes: list[tuple[int, int]] = []
    limit = ConcurrencyLimit(2, 1, "gen", on_change=lambda r, w: changes.append((r, w)))
    hold = None

    async def job():
        async with limit.slot():
            await hold.wait()

    async def main():
        nonlocal hold
        hold = asyncio.Event()
        jobs = [asyncio.ensure_future(job()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert (limit.running, limit.waiting) == (2, 1)
        with pytest.raises(QueueFull, match="gen queue is full"):
            async with limit.slot():
                pass
        hold.set()
        await asyncio.gather(*jobs)
        # a failing job releases its slot too
        with pytest.raises(ZeroDivisionError):
            async with limit.slot():
                raise ZeroDivisionError("planted")

    asyncio.run(main())
    assert (limit.running, limit.waiting) == (0, 0)
    assert changes[-1] == (0, 0) and max(r for r, _ in changes) == 2
