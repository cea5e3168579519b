"""The pure half of the Docker driver's log reader: frames, exact timestamps, joined lines."""

from __future__ import annotations

import struct

from dkos.engines import docker, loglines
from dkos.engines.base import LogLine, LogStream


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_frames_are_cut_from_chunks_and_an_incomplete_one_waits() -> None:
    data = frame(1, b"one") + frame(2, b"two") + frame(1, b"three")
    frames, used = docker._split_frames(data[:-2])
    assert frames == [(1, b"one"), (2, b"two")]
    assert used == len(frame(1, b"one") + frame(2, b"two"))
    assert docker._split_frames(data) == ([(1, b"one"), (2, b"two"), (1, b"three")], len(data))


def test_engine_timestamps_are_exact_to_the_nanosecond() -> None:
    assert loglines.stamp_ns(b"2026-11-25T19:44:20.123456789Z") == 1_795_635_860_123_456_789
    assert loglines.stamp_ns(b"2026-11-25T19:44:20.1Z") == 1_795_635_860_100_000_000
    assert loglines.stamp_ns(b"2026-11-25T20:44:20.000000001+01:00") == 1_795_635_860_000_000_000  # via float
    assert loglines.stamp_ns(b"2026-11-25T19:44:20Z") == 1_795_635_860_000_000_000  # json-file: no fraction
    assert loglines.stamp_ns(b"junk") is None


def test_lines_split_by_the_engine_are_joined_with_the_time_of_their_first_part() -> None:
    joiner = loglines.LineJoiner()
    lines = joiner.feed(
        docker._frame_lines(
            [
                (1, b"2026-11-25T19:44:20.000000001Z part-a "),
                (2, b"2026-11-25T19:44:20.000000002Z err\n"),
                (1, b"2026-11-25T19:44:20.000000003Z part-b\n"),
                (0, b"2026-11-25T19:44:20.000000004Z stdin is ignored\n"),
                (1, b"2026-11-25T19:44:20.000000005Z no newline"),
            ]
        )
    )
    base = 1_795_635_860_000_000_000
    assert lines == [
        LogLine(base + 2, LogStream.STDERR, b"err"),
        LogLine(base + 1, LogStream.STDOUT, b"part-a part-b"),
    ]
    assert joiner.flush() == [LogLine(base + 5, LogStream.STDOUT, b"no newline")]


def test_a_runaway_line_is_emitted_in_marked_pieces() -> None:
    joiner = loglines.LineJoiner()
    chunk = b"x" * (loglines.MAX_JOINED_LINE // 2 + 1)
    stamp = b"2026-11-25T19:44:20.000000001Z "
    lines = joiner.feed(docker._frame_lines([(1, stamp + chunk), (1, stamp + chunk), (1, stamp + b"end\n")]))
    assert [(len(line.data), line.partial) for line in lines] == [(len(chunk) * 2, True), (3, False)]
