"""What `--since` and `--until` mean: a duration back from now, or a point in time.

Pure: the caller passes `now`. Accepted forms, named in every error:

- a duration back from now: `30s`, `10m`, `2h`, `7d`, `1h30m` (units s, m, h, d, w)
- an RFC 3339 / ISO 8601 time: `2026-11-25T19:00:00Z`, `2026-11-25T19:00:00+01:00`,
  `2026-11-25 19:00`, `2026-11-25` (no offset means UTC)
- a Unix timestamp in seconds: `1764097200` or `1764097200.5`
- `now`
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

ACCEPTED = (
    "a duration back from now (30s, 10m, 2h, 7d, 1h30m), an RFC 3339 time "
    "(2026-11-25T19:00:00Z, 2026-11-25 19:00, 2026-11-25; UTC unless an offset is given), "
    "a Unix timestamp in seconds (1764097200) or `now`"
)

_DURATION = re.compile(r"(?:([0-9]+(?:\.[0-9]+)?)(w|d|h|m|s))")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class BadTime(ValueError):
    """Raised for a time in none of the accepted forms; the message names them."""


def parse(value: str, *, now: float) -> float:
    """Epoch seconds for `value`."""
    text = value.strip()
    if not text:
        raise BadTime(f"empty time; use {ACCEPTED}")
    if text == "now":
        return now
    if _is_durations(text):
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    try:
        return float(text) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) else _iso(text)
    except ValueError:
        raise BadTime(f"not a time: {value!r}; use {ACCEPTED}") from None


def _is_durations(text: str) -> bool:
    """`1h30m` is; `1h30`, `yesterday-ish` and `10 m` are not."""
    return "".join(n + u for n, u in _DURATION.findall(text)) == text


def _iso(text: str) -> float:
    parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def to_ns(seconds: float) -> int:
    return round(seconds * 1e9)
