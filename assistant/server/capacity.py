"""Bounded answering: a fixed number of answers run in worker threads, a bounded number
wait, and anything beyond that (or waiting too long) is told to come back (503 + Retry-After).

Nothing queues forever and nothing is dropped silently. A slot is freed when the work
itself ends (not when the client goes away), so a burst of abandoned requests cannot
pile up more threads than the limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class OverCapacity(Exception):
    """The server is full; the message says why, ``retry_after`` when to come back."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Capacity:
    def __init__(self, max_running: int, max_waiting: int, wait_timeout: float, name: str = "answer") -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_running, thread_name_prefix=name)
        self.running = 0
        self.waiting = 0
        self.rejected = 0
        self._sem: asyncio.Semaphore | None = None

    def _retry_after(self) -> int:
        return max(1, min(30, round(self.wait_timeout / 4)))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread once a slot is free (all counters live on the event loop)."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_running)
        if self.running + self.waiting >= self.max_running + self.max_waiting:
            self.rejected += 1
            raise OverCapacity(f"server busy: {self.running} answers running and {self.waiting} waiting; "
                               "retry later", self._retry_after())
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_timeout):
                await self._sem.acquire()
        except TimeoutError:
            self.rejected += 1
            raise OverCapacity(f"server busy: no answer slot free within {self.wait_timeout:g} s; retry later",
                               self._retry_after()) from None
        finally:
            self.waiting -= 1
        self.running += 1
        loop = asyncio.get_running_loop()

        def release(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed at shutdown
                loop.call_soon_threadsafe(self._release)

        try:
            fut = self.pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        fut.add_done_callback(release)
        return await asyncio.wrap_future(fut)

    def _release(self) -> None:
        self.running -= 1
        assert self._sem is not None
        self._sem.release()

    def stats(self) -> dict[str, int]:
        return {"running": self.running, "waiting": self.waiting, "max_running": self.max_running,
                "max_waiting": self.max_waiting, "rejected": self.rejected}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
