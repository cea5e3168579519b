"""Shipping: stored lines → an Elasticsearch- or OpenSearch-compatible `_bulk` endpoint.

At least once, in store order: the shipper reads the lines after its checkpoint (a row in
`logs.db`), posts them as one `_bulk` request, and moves the checkpoint only when the
endpoint has taken them. A failed request (no answer, a non-2xx status, or an item refused
with 429 or 5xx) is retried with exponential backoff, for as long as it takes; the store's
caps bound how far behind it may fall (lines dropped before they were shipped are counted
in the store's drops). Each document's `_id` is derived from the line, so a batch sent
twice overwrites rather than duplicates. Items refused for good (a 4xx such as a mapping
conflict) are logged and skipped: sending them again would fail again.

`bulk_body` and `judge` are pure; `Shipper` is the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from dkos.core.settings import Settings
from dkos.logs.store import LogStore, StoredLine, rfc3339

log = logging.getLogger(__name__)

CHECKPOINT = "bulk"


def document(line: StoredLine) -> dict[str, Any]:
    return {
        "@timestamp": rfc3339(line.ts_ns),
        "message": line.text,
        "project": line.project,
        "app": line.app,
        "instance": line.instance,
        "version": line.version,
        "stream": line.stream,
        "dkos": {"line_id": line.id, "part": line.part, "more": line.more, "escaped": line.escaped},
    }


def bulk_body(lines: Sequence[StoredLine], *, index: str) -> bytes:
    """NDJSON: an `index` action with a stable `_id`, then the document, for each line."""
    out = []
    for line in lines:
        out.append(json.dumps({"index": {"_index": index, "_id": f"{line.ts_ns}-{line.id}"}}))
        out.append(json.dumps(document(line), ensure_ascii=False))
    return ("\n".join(out) + "\n").encode()


@dataclasses.dataclass(frozen=True)
class Verdict:
    retry: bool
    """Send the batch again (later); the checkpoint must not move."""
    rejected: int = 0
    """Items refused for good (skipped)."""
    reason: str = ""


def judge(status: int, body: Any) -> Verdict:
    """What a `_bulk` answer means for the batch."""
    if not 200 <= status < 300:
        return Verdict(True, reason=f"HTTP {status}")
    if not isinstance(body, dict):
        return Verdict(True, reason="an answer that is not a JSON object")
    if not body.get("errors"):
        return Verdict(False)
    rejected = 0
    for item in body.get("items") or []:
        result: Any = next(iter(item.values()), {}) if isinstance(item, dict) else {}
        code = int(result.get("status", 0)) if isinstance(result, dict) else 0
        if code == 429 or code >= 500:
            return Verdict(True, reason=f"an item refused with {code}")
        if code >= 300:
            rejected += 1
    return Verdict(False, rejected=rejected, reason="items refused for good" if rejected else "")


class Shipper:
    """An async context manager running the shipping loop."""

    def __init__(self, store: LogStore, *, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        assert settings.logs_ship_url, "shipping needs logs_ship_url"
        self.store = store
        self.url = settings.logs_ship_url.rstrip("/") + "/_bulk"
        self.index = settings.logs_ship_index
        self.batch = settings.logs_ship_batch
        self.max_delay = settings.logs_ship_retry_max_delay
        self._client = httpx.AsyncClient(transport=transport, timeout=30)
        self._task: asyncio.Task[None] | None = None
        self.shipped = 0

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="logs-shipper")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _run(self) -> None:
        last = await self.store.checkpoint(CHECKPOINT)
        delay = 0.5
        while True:
            lines = await self.store.after(last, limit=self.batch)
            if not lines:
                await self.store.wait_newer(last, timeout=5.0)
                continue
            verdict = await self._send(lines)
            if verdict.retry:
                log.warning("log shipping to %s failed (%s); retrying in %.1fs", self.url, verdict.reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if verdict.rejected:
                log.warning("%s refused %d log lines for good; skipped", self.url, verdict.rejected)
            delay = 0.5
            last = lines[-1].id
            await self.store.set_checkpoint(CHECKPOINT, last)
            self.shipped += len(lines)

    async def _send(self, lines: Sequence[StoredLine]) -> Verdict:
        try:
            answer = await self._client.post(
                self.url, content=bulk_body(lines, index=self.index), headers={"Content-Type": "application/x-ndjson"}
            )
        except httpx.HTTPError as exc:
            return Verdict(True, reason=str(exc) or type(exc).__name__)
        try:
            body = answer.json()
        except ValueError:
            body = None
        return judge(answer.status_code, body)
