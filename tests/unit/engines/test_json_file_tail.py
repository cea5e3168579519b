"""Reading json-file logs from disk: the entries Docker writes, and rotations happening
between reads (files renamed the way json-file renames them)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from dkos.engines.base import LogLine, LogStream
from dkos.engines.loglines import JsonFileTail, parse_json_lines

BASE = 1_795_635_860_000_000_000


def record(n: int, text: str | None = None, stream: str = "stdout") -> bytes:
    """A line as json-file writes it (Go trims trailing zeros of the fraction)."""
    fraction = f"{n:09d}".rstrip("0")
    stamp = f"2026-11-25T19:44:20.{fraction}Z" if fraction else "2026-11-25T19:44:20Z"
    body = {"log": (f"line-{n}" if text is None else text) + "\n", "stream": stream, "time": stamp}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


class Log:
    """A json-file log in a directory, rotated like the engine rotates it."""

    def __init__(self, directory: Path, max_files: int = 3) -> None:
        self.path = directory / "c-json.log"
        self.max_files = max_files
        self.path.touch()

    def write(self, *numbers: int) -> None:
        with self.path.open("ab") as handle:
            for n in numbers:
                handle.write(record(n))

    def rotate(self) -> None:
        for n in range(self.max_files - 1, 0, -1):
            older = Path(f"{self.path}.{n}")
            if older.exists():
                if n == self.max_files - 1:
                    older.unlink()
                else:
                    older.rename(f"{self.path}.{n + 1}")
        self.path.rename(f"{self.path}.1")
        self.path.touch()


def numbers(tail: JsonFileTail) -> list[int]:
    return [int(line.text.removeprefix("line-")) for line in tail.read()]


def test_common_lines_and_escaped_ones_parse_alike() -> None:
    tricky = 'tab\there "quoted" <html> & \\ é \x01'
    written = record(5) + record(7, tricky, "stderr") + record(9)
    expected = [
        LogLine(BASE + 5, LogStream.STDOUT, b"line-5"),
        LogLine(BASE + 7, LogStream.STDERR, tricky.encode()),
        LogLine(BASE + 9, LogStream.STDOUT, b"line-9"),
    ]
    assert parse_json_lines(written) == expected
    assert parse_json_lines(record(5) + record(9)) == [expected[0], expected[2]]
    # A line the engine split at 16 KiB has no newline; a whole second has no fraction.
    split = b'{"log":"part","stream":"stdout","time":"2026-11-25T19:44:20Z"}\n'
    assert parse_json_lines(split) == [LogLine(BASE, LogStream.STDOUT, b"part", partial=True)]
    assert parse_json_lines(b"not json\n" + record(1)) == [LogLine(BASE + 1, LogStream.STDOUT, b"line-1")]
    assert parse_json_lines(b'{"log":"x\\n","stream":"stdin","time":"2026-11-25T19:44:20Z"}\n') == []


def test_a_tail_reads_what_is_written_and_waits_at_the_end(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.write(1, 2)
    tail = JsonFileTail(str(log.path))
    tail.open()
    assert numbers(tail) == [1, 2]
    assert numbers(tail) == []
    with log.path.open("ab") as handle:  # half a line: it waits for its end
        handle.write(record(3)[:10])
    assert numbers(tail) == []
    with log.path.open("ab") as handle:
        handle.write(record(3)[10:])
    assert numbers(tail) == [3]
    tail.close()


def test_lines_written_just_before_a_rotation_and_after_it_are_all_read(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.write(1)
    tail = JsonFileTail(str(log.path))
    tail.open()
    assert numbers(tail) == [1]
    log.write(2)  # after the tail's last read, before the rotation
    log.rotate()
    log.write(3)
    assert numbers(tail) == [2, 3]
    tail.close()


def test_two_rotations_between_reads_lose_nothing_still_on_disk(tmp_path: Path) -> None:
    log = Log(tmp_path, max_files=4)
    log.write(1)
    tail = JsonFileTail(str(log.path))
    tail.open()
    assert numbers(tail) == [1]
    log.write(2)
    log.rotate()
    log.write(3)
    log.rotate()
    log.write(4)
    assert numbers(tail) == [2, 3, 4]
    log.rotate()
    log.write(5)
    assert numbers(tail) == [5]
    tail.close()


def test_opening_from_a_time_starts_in_the_file_that_holds_it(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.write(1, 2)
    log.rotate()
    log.write(3, 4)
    log.rotate()
    log.write(5)
    everything = JsonFileTail(str(log.path))
    everything.open()
    assert numbers(everything) == [1, 2, 3, 4, 5]
    everything.close()
    since = JsonFileTail(str(log.path), since_ns=BASE + 4)  # inclusive, as the engine's `since`
    since.open()
    assert numbers(since) == [4, 5]
    since.close()


def test_compressed_rotated_files_are_read(tmp_path: Path) -> None:
    log = Log(tmp_path)
    log.write(1)
    log.rotate()
    rotated = Path(f"{log.path}.1")
    with gzip.open(f"{rotated}.gz", "wb") as handle:
        handle.write(rotated.read_bytes())
    rotated.unlink()
    log.write(2)
    tail = JsonFileTail(str(log.path))
    tail.open()
    assert numbers(tail) == [1, 2]
    tail.close()


def test_a_file_that_cannot_be_read_is_refused_at_open(tmp_path: Path) -> None:
    tail = JsonFileTail(str(tmp_path / "missing-json.log"))
    with pytest.raises(OSError):
        tail.open()
    if os.geteuid() != 0:  # root reads anything: the driver then never needs the fallback
        unreadable = tmp_path / "c-json.log"
        unreadable.write_bytes(record(1))
        unreadable.chmod(0)
        with pytest.raises(OSError):
            JsonFileTail(str(unreadable)).open()
