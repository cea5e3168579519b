"""The engine's log lines: exact timestamps, lines the engine split joined
again, and the json-file files read straight from disk.

Docker's log endpoint reads the json-file files itself, decodes each line's JSON and
encodes it again as a frame: measured here, 13 µs of dockerd CPU per line, about two
thirds of what writing the line cost it (docs/logs.md). Node log collectors (Fluent Bit's
tail input, Promtail, Filebeat) read the files instead; so does the Docker driver, when
the engine is on this machine and the files are readable (`JsonFileTail`). Both ways end
in the same `LogLine`s, `partial` where the engine split a line, and the same `LineJoiner`.
Lines are handled a batch at a time: capture reads tens of thousands a second, and every
per-line step in Python costs a visible share of a core.

json-file rotates by renaming `x-json.log` to `x-json.log.1` (`.1` to `.2`, …, the oldest
dropped; `.N.gz` with `compress`) and opening a new `x-json.log`. A tail holds its file
open, so a rotation never takes what was in it; at the end of its file it goes on with
the file that came next, found by inode, however many rotations happened meanwhile. Lines
rotated out before they were read are gone, as they are for Docker's own reader.
"""

from __future__ import annotations

import gzip
import io
import json
import operator
import os
import re
from datetime import datetime
from typing import IO, cast

from dkos.engines.base import LogLine, LogStream

MAX_JOINED_LINE = 1 << 20
"""A line the engine split is joined up to this size; a longer one is emitted in pieces."""

_STREAM_NAMES = {b"stdout": LogStream.STDOUT, b"stderr": LogStream.STDERR}
_PLAIN_LINE = re.compile(
    rb'\{"log":"([^"\\]*)\\n","stream":"(stdout|stderr)","time":"([0-9T:-]{19})(?:\.([0-9]{1,9}))?Z"\}\n'
)
"""A whole json-file line whose text needed no JSON escape: almost every line."""
_FRACTION_SCALE = [10 ** (9 - digits) for digits in range(10)]
_PARTIAL = operator.itemgetter(3)
_HEAD = b'{"log":"'
_STREAM_KEY = b'","stream":"'
_TIME_KEY = b'","time":"'
_READ_SIZE = 1 << 18
"""Bytes read at a time: about 2,500 lines, parsed in about 8 ms of the event loop."""
_MAX_ROTATED = 100
"""Rotated files looked for: json-file's max-file is a small number."""

_EPOCH_OF_SECOND: dict[bytes, int] = {}


def epoch_of_second(head: bytes) -> int | None:
    """`2026-11-25T19:44:20` → epoch seconds. Cached: consecutive lines share their second,
    so a date is parsed once per second of output, not once per line."""
    seconds = _EPOCH_OF_SECOND.get(head)
    if seconds is None:
        parsed = _parse_rfc3339(head + b"Z")
        if parsed is None:
            return None
        if len(_EPOCH_OF_SECOND) > 4096:
            _EPOCH_OF_SECOND.clear()
        seconds = _EPOCH_OF_SECOND[head] = round(parsed)
    return seconds


def stamp_ns(stamp: bytes) -> int | None:
    """The engine's RFC 3339 timestamp (`...T19:44:20.123456789Z`, any number of fraction
    digits: json-file trims trailing zeros) as exact epoch nanoseconds."""
    head, _, rest = stamp.partition(b".")
    if not rest and head.endswith(b"Z"):
        head, rest = head[:-1], b"Z"  # a whole second: json-file writes no fraction
    if rest.endswith(b"Z") and (len(rest) == 1 or rest[:-1].isdigit()):
        seconds = epoch_of_second(head)
        return None if seconds is None else seconds * 1_000_000_000 + int(rest[:-1].ljust(9, b"0")[:9])
    parsed = _parse_rfc3339(stamp)  # an offset other than Z
    return None if parsed is None else round(parsed * 1e9)


def _parse_rfc3339(stamp: bytes) -> float | None:
    try:
        return datetime.fromisoformat(stamp.decode("ascii")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def parse_json_lines(data: bytes) -> list[LogLine]:
    """Whole lines of a json-file file (`data` ends with a newline) → lines; what is not
    a log line is skipped."""
    found = _PLAIN_LINE.findall(data)
    if len(found) != data.count(b"\n"):
        # Some line needs the JSON decoder (an escape, a split line, another layout).
        return [line for raw in data.split(b"\n")[:-1] if (line := parse_json_line(raw)) is not None]
    lines: list[LogLine] = []
    append = lines.append
    seconds_of = _EPOCH_OF_SECOND.get
    streams = _STREAM_NAMES
    scale = _FRACTION_SCALE
    for text, stream, head, fraction in found:
        seconds = seconds_of(head) or epoch_of_second(head) or 0
        nanos = int(fraction) * scale[len(fraction)] if fraction else 0
        append(LogLine(seconds * 1_000_000_000 + nanos, streams[stream], text))
    return lines


def parse_json_line(raw: bytes) -> LogLine | None:
    """One line of a json-file file (without its newline) → a line; None for what is not one."""
    try:
        data = json.loads(raw)
        stream = _STREAM_NAMES.get(str(data["stream"]).encode())
        at = stamp_ns(str(data["time"]).encode())
        text = str(data["log"]).encode("utf-8", errors="surrogateescape")
    except (ValueError, KeyError, TypeError, UnicodeEncodeError):
        return None
    if stream is None or at is None:
        return None
    if text.endswith(b"\n"):
        return LogLine(at, stream, text[:-1])
    return LogLine(at, stream, text, partial=True)  # the engine split it; the rest follows


class LineJoiner:
    """Lines the engine split (`partial`: no newline at its end) are joined with what
    follows on the same stream and carry the time of their first part."""

    def __init__(self) -> None:
        self._pending: dict[LogStream, tuple[int, bytearray]] = {}

    def feed(self, batch: list[LogLine]) -> list[LogLine]:
        pending = self._pending
        if not pending and not any(map(_PARTIAL, batch)):
            return batch  # the common case: every line whole
        lines: list[LogLine] = []
        append = lines.append
        for line in batch:
            if not pending and not line.partial:
                append(line)
                continue
            first_at, buffer = pending.pop(line.stream, (line.time_ns, bytearray()))
            buffer += line.data
            if not line.partial:
                append(LogLine(first_at, line.stream, bytes(buffer)))
            elif len(buffer) >= MAX_JOINED_LINE:
                append(LogLine(first_at, line.stream, bytes(buffer), partial=True))
            else:
                pending[line.stream] = (first_at, buffer)
        return lines

    def flush(self) -> list[LogLine]:
        lines = [LogLine(at, stream, bytes(buffer)) for stream, (at, buffer) in self._pending.items()]
        self._pending.clear()
        return lines


class JsonFileTail:
    """A container's json-file log, read from `since_ns` (inclusive) on, across rotations.

    `read` returns what the files hold now and never blocks on more: whoever follows calls
    it again (the driver polls, and reads a last time after the container stopped)."""

    def __init__(self, path: str, *, since_ns: int | None = None) -> None:
        self.path = path
        self.since_ns = since_ns or 0
        self._file: IO[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file read now, while it is one json-file may rotate."""
        self._rest = b""
        self._queue: list[IO[bytes]] = []
        """Opened files to read after the current one, oldest first."""

    def open(self) -> None:
        """Open the files from the one holding `since_ns` on. Raises OSError if the current
        file cannot be read (the caller then asks the engine instead)."""
        # The current file first: a rotation between the opens then shows as a file opened
        # twice (dropped by inode), never as one missed.
        current = open(self.path, "rb")  # noqa: SIM115 - held open across reads, closed by `close`
        rotated = [f for f in (self._open_quietly(name) for name in self._rotated_names()) if f is not None]
        files = _distinct([*reversed(rotated), current])  # oldest first
        # Skip whole files that end before `since_ns`: the file after them starts at or before it.
        start = 0
        if self.since_ns:
            for index, handle in enumerate(files):
                first = _first_time(handle)
                if first is not None and first <= self.since_ns:
                    start = index
        for handle in files[:start]:
            handle.close()
        self._file, *self._queue = files[start:]
        self._identity = _identity(current) if not self._queue else None

    def read(self, max_lines: int = 2_000) -> list[LogLine]:
        """The lines written since the last read, up to about `max_lines`."""
        lines: list[LogLine] = []
        while self._file is not None and len(lines) < max_lines:
            chunk = self._file.read(_READ_SIZE)
            if not chunk:
                if not self._advance():
                    break
                continue
            data = self._rest + chunk if self._rest else chunk
            end = data.rfind(b"\n") + 1
            self._rest = data[end:]
            lines += parse_json_lines(data[:end])
        if self.since_ns and lines and lines[0].time_ns < self.since_ns:
            since = self.since_ns
            lines = [line for line in lines if line.time_ns >= since]
        return lines

    def close(self) -> None:
        for handle in [self._file, *self._queue]:
            if handle is not None:
                handle.close()
        self._file, self._queue = None, []

    def _advance(self) -> bool:
        """At the end of the file read now: go on with the next one, if there is one yet."""
        assert self._file is not None
        if self._queue:
            self._file.close()
            self._file = self._queue.pop(0)
            self._rest = b""
            if not self._queue:
                self._identity = _identity(self._file)
            return True
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # mid-rotation (or the container was removed): nothing newer yet
        if self._identity is None or (now.st_dev, now.st_ino) == self._identity:
            return False
        # Rotated. Lines may have gone into our file between its end being read and the
        # rotation: read it to its end once more before going on with the files after it.
        self._queue = self._after_rotation(self._identity)
        self._identity = None
        return bool(self._queue)

    def _after_rotation(self, identity: tuple[int, int]) -> list[IO[bytes]]:
        """The files written after the one with `identity`, oldest first, opened."""
        opened = [self._open_quietly(name) for name in [self.path, *self._rotated_names()]]
        chain = _distinct([handle for handle in reversed(opened) if handle is not None])  # oldest first
        ids = [_identity(handle) for handle in chain]
        # Not found: ours was rotated out meanwhile; everything still there came after it.
        ours = ids.index(identity) if identity in ids else -1
        for handle in chain[: ours + 1]:
            handle.close()
        return chain[ours + 1 :]

    def _rotated_names(self) -> list[str]:
        """`x-json.log.1`, `.2`, … (or `.N.gz`) as they exist now, newest first."""
        names = []
        for n in range(1, _MAX_ROTATED):
            name = f"{self.path}.{n}"
            if os.path.exists(name):
                names.append(name)
            elif os.path.exists(name + ".gz"):
                names.append(name + ".gz")
            else:
                break
        return names

    @staticmethod
    def _open_quietly(name: str) -> IO[bytes] | None:
        try:
            if name.endswith(".gz"):
                return cast(IO[bytes], gzip.open(name, "rb"))
            return open(name, "rb")
        except OSError:
            return None  # rotated away between the listing and the open


def _identity(handle: IO[bytes]) -> tuple[int, int]:
    if isinstance(handle, gzip.GzipFile):
        return (-1, id(handle))  # a compressed file is never written again
    info = os.fstat(handle.fileno())
    return info.st_dev, info.st_ino


def _distinct(files: list[IO[bytes]]) -> list[IO[bytes]]:
    """`files` without a second handle on the same file (the first is kept)."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for handle in files:
        identity = _identity(handle)
        if identity in seen:
            handle.close()
        else:
            seen.add(identity)
            kept.append(handle)
    return kept


def _first_time(handle: IO[bytes]) -> int | None:
    """The time of a file's first line; the handle is left where it was."""
    try:
        position = handle.tell()
        line = handle.readline(MAX_JOINED_LINE)
        handle.seek(position, io.SEEK_SET)
    except OSError:
        return None
    entry = parse_json_line(line.rstrip(b"\n"))
    return None if entry is None else entry.time_ns
