"""An asyncio event loop in a daemon thread that synchronous code hands coroutines to.

Dagster runs ops in ordinary threads, and an op may even be called from inside a running
event loop, so a model resource cannot simply `asyncio.run` its async client: an
`httpx.AsyncClient` is bound to the loop it first ran on, and its connection pool should live
for the whole run. The resource starts one `EventLoopThread` at setup, builds its async client
on it, submits every batch with `run`, and stops it at teardown.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """Own one event loop running forever in a daemon thread until `stop` is called.

    Example:
        >>> runner = EventLoopThread("doc")
        >>> async def two() -> int:
        ...     return 2
        >>> runner.run(two())
        2
        >>> runner.stop()
    """

    def __init__(self, name: str):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop and block the calling thread until it finishes."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("EventLoopThread.run was called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        """Stop the loop, cancel what is left on it, and join the thread."""
        if self._loop.is_closed():
            return

        async def _cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_cancel_rest(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()
