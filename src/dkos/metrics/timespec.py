"""Time parsing for OpenTSDB queries: `start`/`end` strings and `<n><unit>` durations.

Used by query parsing (`start`, `end`) and by downsample specs (`1m`, `500ms`). The rules and the
error texts are OpenTSDB's `DateTime.parseDateTimeString` / `parseDuration`, quirks included:
a number of at most 10 characters is seconds, longer is milliseconds; the dot of `1356998400.500`
is simply deleted; a duration's unit is only its last letter, case-insensitive (`1M` is a minute).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dkos import metrics

_LONG_MAX = 2**63 - 1
_SECONDS_PER_UNIT = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "n": 30 * 86400,
    "y": 365 * 86400,
}
_MS_LITERAL = re.compile(r"^[0-9]+ms$")
_DOTTED_SECONDS = re.compile(r"^[0-9]{10}\.[0-9]{1,3}$")
_ABSOLUTE_FORMATS = {
    10: ("%Y/%m/%d", "%Y/%m/%d"),
    16: ("%Y/%m/%d-%H:%M", "%Y/%m/%d %H:%M"),
    19: ("%Y/%m/%d-%H:%M:%S", "%Y/%m/%d %H:%M:%S"),
}


def parse_duration(text: str) -> int:
    """`30s`, `1m`, `500ms`, `1n` (30 days), `1y` (365 days) → milliseconds (strictly positive)."""
    digits = 0
    while digits < len(text) and text[digits].isdigit():
        digits += 1
    if digits >= len(text):
        raise metrics.QueryError(f"Invalid duration, must have an integer and unit: {text}")
    if digits == 0:
        raise metrics.QueryError(f"Invalid duration (number): {text}")
    count = int(text[:digits])
    if count <= 0:
        raise metrics.QueryError(f"Zero or negative duration: {text}")
    unit = text[-1].lower()
    if unit == "s" and len(text) >= 2 and text[-2] == "m":
        return count
    if unit not in _SECONDS_PER_UNIT:
        raise metrics.QueryError(f"Invalid duration (suffix): {text}")
    ms = count * _SECONDS_PER_UNIT[unit] * 1000
    if ms > _LONG_MAX:
        raise metrics.QueryError(f"Duration must be < Long.MAX_VALUE ms: {text}")
    return ms


def zone(name: str | None) -> ZoneInfo:
    """The tz database zone `name` (UTC when unset); an unknown name is a 400, as in OpenTSDB."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise metrics.QueryError(f"Invalid timezone name: {name}") from exc


def parse_time(text: str, *, now_ms: int, timezone: str | None = None) -> int:
    """A `start`/`end` value → epoch milliseconds.

    Accepts `1356998400500ms`, `now`, `<n><unit>-ago`, `yyyy/MM/dd[-| ]HH:mm[:ss]` (in `timezone`,
    UTC when unset — the dkos server's zone), and unix seconds (≤ 10 characters) or milliseconds.
    """
    if _MS_LITERAL.match(text):
        return int(text[:-2])
    if text == "now":
        return now_ms
    if text.lower().endswith("-ago"):
        return now_ms - parse_duration(text[:-4])
    if "/" in text or ":" in text:
        return _parse_absolute(text, timezone)
    digits = text
    if "." in text:
        if not _DOTTED_SECONDS.match(text):
            raise metrics.QueryError(
                f"Invalid time: {text}. Millisecond timestamps must be in the format "
                "<seconds>.<ms> where the milliseconds are limited to 3 digits"
            )
        digits = text.replace(".", "")
    if digits.startswith("-") and digits[1:].isdigit():
        raise metrics.QueryError(f"Invalid time: {text}. Negative timestamps are not supported.")
    if not digits.isdigit() or not digits.isascii():
        raise metrics.QueryError(f'Invalid time: {text}. For input string: "{digits}"')
    value = int(digits)
    return value * 1000 if len(text) <= 10 else value


def _parse_absolute(text: str, timezone: str | None) -> int:
    formats = _ABSOLUTE_FORMATS.get(len(text))
    if formats is None:
        raise metrics.QueryError(f"Invalid absolute date: {text}")
    fmt = formats[0] if "-" in text else formats[1]
    try:
        naive = datetime.strptime(text, fmt)
    except ValueError as exc:
        raise metrics.QueryError(f"Invalid date: {text}. {exc}") from exc
    return int(naive.replace(tzinfo=zone(timezone)).timestamp()) * 1000
