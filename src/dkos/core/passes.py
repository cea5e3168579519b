"""A background pass run when something wakes it, and at least every `interval` seconds.

The shape of the autoscaler and of the log-keyword alarms: an event (new alarm states, new
lines) wakes the pass at once, a period catches what no event announced, and a failed pass is
logged and tried again at the next wake — the loop itself never dies of it. An async context
manager: entering starts the task, leaving cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

log = logging.getLogger("dkos")


class RepeatedPass:
    def __init__(self, name: str, run: Callable[[], Awaitable[None]], *, interval: float) -> None:
        self.name = name
        self._run = run
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run the pass as soon as the current one (if any) ends; wakes that come meanwhile collapse."""
        self._wake.set()

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._loop(), name=self.name)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again at the next pass", self.name)
