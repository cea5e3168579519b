"""SSE parsing: the lines of `GET /v1/events` become messages, as the WHATWG rules say."""

from __future__ import annotations

from dkos.cli import sse


def test_messages_end_at_blank_lines_and_comments_are_skipped() -> None:
    lines = [": keep-alive", "", "id: 1", "event: app.created", 'data: {"id": 1}', "", "id: 2", "data: two", ""]

    assert list(sse.parse(lines)) == [
        sse.Message(event="app.created", data='{"id": 1}', id="1"),
        sse.Message(event="message", data="two", id="2"),
    ]


def test_data_lines_are_joined_and_one_space_after_the_colon_is_dropped() -> None:
    lines = ["data:first", "data:  second", "", "data", ""]

    assert [m.data for m in sse.parse(lines)] == ["first\n second", ""]


def test_the_last_id_carries_over_to_messages_without_one() -> None:
    lines = ["id: 5", "data: a", "", "data: b", ""]

    assert [m.id for m in sse.parse(lines)] == ["5", "5"]


def test_a_final_message_without_its_blank_line_is_kept() -> None:
    assert list(sse.parse(["event: x", "data: last"])) == [sse.Message(event="x", data="last", id=None)]


def test_unknown_fields_and_empty_messages_yield_nothing() -> None:
    assert list(sse.parse(["retry: 1000", "", "event: lonely", "", "foo: bar", ""])) == []
