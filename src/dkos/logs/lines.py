"""What a captured line becomes before it is stored: escaped text, in pieces if over-long.

Pure. A line is bytes as the container wrote them; the store keeps text a terminal and a
JSON client can show. Invalid UTF-8 and control characters (other than tab) are written
as `\\xNN` escapes, so a binary blob dumped on stdout can neither break the JSON API nor
drive the reader's terminal; such lines are marked `escaped`. A line longer than the limit
is cut into pieces at character boundaries; each piece is stored as a line of its own,
numbered (`part` 1, 2, …) with `more` set on all but the last, so nothing is dropped and
a reader can join them back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_LINE_BYTES = 32 * 1024
"""Vector's `max_line_bytes` default; Docker itself cuts at 16 KiB (and the driver rejoins)."""

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Piece:
    text: str
    part: int
    """0 for a whole line; 1, 2, … for the pieces of an over-long one."""
    more: bool
    """Another piece of the same line follows."""
    escaped: bool


def escape(data: bytes) -> tuple[str, bool]:
    """The line as text, and whether anything had to be escaped. A trailing `\\r` (CRLF
    output) is dropped rather than escaped: it is a line ending, not junk."""
    if data.endswith(b"\r"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="backslashreplace")
        return _CONTROL.sub(_escape_char, text), True
    if _CONTROL.search(text) is None:
        return text, False
    return _CONTROL.sub(_escape_char, text), True


def clean_texts(datas: Sequence[bytes], *, max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[str] | None:
    """The lines as text if none needs escaping or cutting, checked with one decode and one
    search over the whole batch; None if any does (each line then goes through `split`)."""
    if not datas or max(map(len, datas)) > max_bytes:
        return None
    try:
        text = b"\n".join(datas).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CONTROL_BUT_NEWLINE.search(text) is not None:
        return None
    texts = text.split("\n")
    return texts if len(texts) == len(datas) else None


def _escape_char(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def split(data: bytes, *, max_bytes: int = DEFAULT_MAX_LINE_BYTES, continued: bool = False) -> list[Piece]:
    """One piece for a line within `max_bytes`, else pieces of at most `max_bytes` each,
    cut where a UTF-8 character starts. `continued`: the engine cut this line already
    (its rest follows as the next line), so the last piece is marked `more` too."""
    if len(data) <= max_bytes and not continued:
        text, escaped = escape(data)
        return [Piece(text, 0, False, escaped)]
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + max_bytes, len(data))
        # Back off to a character start: at most 3 bytes, a UTF-8 character's continuation;
        # junk with no character start nearby is cut where it is.
        back = end
        while back < len(data) and back > end - 3 and back > start + 1 and data[back] & 0xC0 == 0x80:
            back -= 1
        if back < len(data) and data[back] & 0xC0 != 0x80:
            end = back
        chunks.append(data[start:end])
        start = end
    if not chunks:
        chunks = [b""]
    pieces = []
    for n, chunk in enumerate(chunks, start=1):
        text, escaped = escape(chunk)
        pieces.append(Piece(text, n, n < len(chunks) or continued, escaped))
    return pieces
