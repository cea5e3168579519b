"""Delivery of notifications to channels: stored first, then POSTed, with retries and an attempt log.

A notification is stored (`pending`) before the first try, so a server restart sends it
on start. Each attempt is logged with its status code or error. 2xx is delivered; a
4xx is refused by the receiver and not retried (`failed`), as Alertmanager does; 5xx
and network errors are retried with exponential backoff up to `notify_max_attempts`,
then the notification is `undelivered` — kept and listed, never silently dropped.
A few workers send at once, so one slow receiver does not hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

import httpx

from dkos.alerts import payloads
from dkos.alerts.store import AlarmStore, DeliveryStatus
from dkos.core.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "dkos-alerts (Alertmanager/0.27 compatible webhook)"


class Notifier:
    def __init__(
        self,
        store: AlarmStore,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        workers: int = 4,
    ) -> None:
        self._store = store
        self._settings = settings
        self._transport = transport
        self._workers = workers
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(
            timeout=self._settings.notify_timeout, transport=self._transport, headers={"User-Agent": USER_AGENT}
        )
        for pending in await self._store.pending_notifications():
            self._queue.put_nowait(pending)
        self._tasks = [asyncio.create_task(self._work(), name=f"notify:{i}") for i in range(self._workers)]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()

    async def send(self, *, project: str, channel: dict[str, Any], notice: payloads.Notice) -> int | None:
        """Store a notification for one channel and queue it; None when the channel skips resolved ones."""
        if not notice.firing and not channel["send_resolved"]:
            return None
        body = payloads.render_alertmanager(notice) if channel["type"] == "webhook" else payloads.render_chat(notice)
        notification_id = await self._store.add_notification(
            project=project,
            channel=channel["name"],
            alarm=notice.alarm,
            reason=notice.why.value,
            url=channel["url"],
            payload=body,
        )
        self._queue.put_nowait(notification_id)
        return notification_id

    async def _work(self) -> None:
        while True:
            notification_id = await self._queue.get()
            try:
                await self._deliver(notification_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification %d: delivery broke; it stays pending until the next start", notification_id)

    async def _deliver(self, notification_id: int) -> None:
        assert self._http is not None, "used inside `async with`"
        notification = await self._store.notification(notification_id)
        settings = self._settings
        delay = settings.notify_backoff_initial
        attempts = int(notification["attempts"])
        while True:
            attempts += 1
            last = attempts >= settings.notify_max_attempts
            try:
                answer = await self._http.post(notification["url"], json=notification["payload"])
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                final = DeliveryStatus.UNDELIVERED if last else None
                await self._store.record_attempt(
                    notification_id, status_code=None, outcome="network_error", error=error, final=final
                )
            else:
                code = answer.status_code
                if 200 <= code < 300:
                    await self._store.record_attempt(
                        notification_id, status_code=code, outcome="delivered", error="", final=DeliveryStatus.DELIVERED
                    )
                    return
                if code < 500:
                    await self._store.record_attempt(
                        notification_id,
                        status_code=code,
                        outcome="refused",
                        error=answer.text[:500],
                        final=DeliveryStatus.FAILED,
                    )
                    log.warning("notification %d refused by %s: %d", notification_id, notification["channel"], code)
                    return
                final = DeliveryStatus.UNDELIVERED if last else None
                await self._store.record_attempt(
                    notification_id, status_code=code, outcome="server_error", error=answer.text[:500], final=final
                )
            if last:
                log.warning(
                    "notification %d to %s undelivered after %d attempts",
                    notification_id,
                    notification["channel"],
                    attempts,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * settings.notify_backoff_factor, settings.notify_backoff_max)
