"""The event loop thread that sync callers hand coroutines to."""

import asyncio
import threading

import pytest

from resources.event_loop_thread import EventLoopThread


def test_runs_coroutines_from_several_threads_and_stops() -> None:
    runner = EventLoopThread("test")

    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    out: list[int] = []
    threads = [threading.Thread(target=lambda i=i: out.append(runner.run(double(i))))
               for i in range(5)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [0, 2, 4, 6, 8]
    runner.stop()
    runner.stop()  # idempotent


def test_exceptions_reach_the_caller() -> None:
    runner = EventLoopThread("test")

    async def fail() -> None:
        raise ValueError("inside")

    try:
        with pytest.raises(ValueError, match="inside"):
            runner.run(fail())
    finally:
        runner.stop()
