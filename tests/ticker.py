"""Ticker: how long an event loop went without running a coroutine that wakes every 10 ms."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

TICK = 0.01


class Ticker:
    """While open, a coroutine sleeps TICK at a time; `largest_gap` is its longest wait.

    An event loop that something blocks for 0.3 s shows a gap of 0.3 s or more.
    """

    def __init__(self) -> None:
        self.largest_gap = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._tick())
        await asyncio.sleep(0)  # let it start
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.largest_gap = max(self.largest_gap, now - last)
            self.ticks += 1
            last = now
