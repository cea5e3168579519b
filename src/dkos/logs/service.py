"""The log subsystem as the server starts it: store, capture and (if configured) shipping.

One async context manager, so `server.py` enters it in one line before the reconciler
(whose engine it wraps with `capture.DrainingEngine`) and leaves it after: removals made
while the server stops still keep their containers' last lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dkos.core.settings import Settings
from dkos.engines.base import Engine
from dkos.logs import caps, shipping
from dkos.logs.capture import Capture, DrainingEngine
from dkos.logs.store import LogStore


@dataclass(frozen=True)
class Logs:
    store: LogStore
    capture: Capture
    engine: Engine
    """The engine for the reconciler: removals drain the container's logs first."""


def limits(settings: Settings) -> caps.Caps:
    return caps.Caps(
        total_bytes=settings.logs_total_bytes,
        app_bytes=settings.logs_app_bytes,
        max_age=settings.logs_max_age,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, engine: Engine, *, owner: str) -> AsyncIterator[Logs]:
    async with contextlib.AsyncExitStack() as stack:
        store = LogStore(settings.data_dir / "logs.db", limits=limits(settings))
        stack.push_async_callback(store.close)
        if settings.logs_ship_url:
            await stack.enter_async_context(shipping.Shipper(store, settings=settings))
        capture = await stack.enter_async_context(Capture(store, engine, owner=owner, settings=settings))
        yield Logs(store=store, capture=capture, engine=DrainingEngine(engine, capture))
