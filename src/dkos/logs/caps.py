"""When the log store is over a cap, what to drop: pure decisions, taking `now` as input.

Caps are by bytes (per app, and in total) and by age. Bytes are the store's accounting
of a line (`line_cost`: its text, its instance name and a fixed overhead for the row and
its index entries), so the decision needs no look at the disk. "Oldest" is the order
lines were stored in. Over a byte cap, lines are dropped until usage is `headroom` below
it, so a store sitting at its cap does not delete on every batch.

`compute` returns the trims in the order they should run (age, then each app over its
cap, then the total); the store runs the first, re-reads its usage, and asks again, so
no trim is computed from figures an earlier one changed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
DEFAULT_TOTAL_BYTES = 1 * GIB
DEFAULT_APP_BYTES = 256 * MIB
DEFAULT_MAX_AGE = 7 * 86_400.0
LINE_OVERHEAD = 64
"""Bytes counted per line besides its text and instance name (row, time, ids, index)."""


def line_cost(text: str, instance: str) -> int:
    return len(text) + len(instance) + LINE_OVERHEAD


class Reason(enum.StrEnum):
    AGE = "age"
    APP_CAP = "app_cap"
    TOTAL_CAP = "total_cap"


@dataclass(frozen=True)
class Caps:
    total_bytes: int = DEFAULT_TOTAL_BYTES
    app_bytes: int = DEFAULT_APP_BYTES
    max_age: float | None = DEFAULT_MAX_AGE
    """Seconds a line is kept; None keeps lines until a byte cap needs the room."""
    headroom: float = 0.05


@dataclass(frozen=True)
class Usage:
    app_key: int
    bytes: int


@dataclass(frozen=True)
class Trim:
    reason: Reason
    app_key: int | None
    """The app whose oldest lines go; None: the oldest lines of the whole store."""
    bytes: int = 0
    """Drop the oldest lines until at least this many bytes are gone (byte caps)."""
    before_ns: int | None = None
    """Drop every line stored before the first one at or after this time (age)."""


def compute(usage: Sequence[Usage], caps: Caps, *, oldest_ns: int | None, now: float) -> list[Trim]:
    """The trims needed now, in the order to run them; empty when the store is within its caps.

    `oldest_ns`: the time of the oldest stored line, None for an empty store."""
    trims: list[Trim] = []
    if caps.max_age is not None and oldest_ns is not None:
        cutoff = round((now - caps.max_age) * 1e9)
        if oldest_ns < cutoff:
            trims.append(Trim(Reason.AGE, None, before_ns=cutoff))
    keep_app = int(caps.app_bytes * (1 - caps.headroom))
    total = 0
    for app in sorted(usage, key=lambda u: u.app_key):
        if app.bytes > caps.app_bytes:
            trims.append(Trim(Reason.APP_CAP, app.app_key, bytes=app.bytes - keep_app))
            total += keep_app
        else:
            total += app.bytes
    if total > caps.total_bytes:
        trims.append(Trim(Reason.TOTAL_CAP, None, bytes=total - int(caps.total_bytes * (1 - caps.headroom))))
    return trims
