from __future__ import annotations

from dkos.cli import logs


def test_each_instance_keeps_its_colour() -> None:
    assert logs.colour("web-1") == logs.colour("web-1")
    assert len({logs.colour(f"web-{n}") for n in range(1, 30)}) > 3


def test_lines_are_prefixed_by_their_instance_padded_to_the_widest() -> None:
    formatter = logs.Formatter(timestamps=False)
    formatter.widen([{"instance": "web-1"}, {"instance": "web-10"}])
    assert formatter.render({"instance": "web-1", "text": "hello", "stream": "stdout"}).plain == "web-1  | hello"
    assert formatter.render({"instance": "web-10", "text": "oops", "stream": "stderr"}).plain == "web-10 | ! oops"
    piece = formatter.render({"instance": "web-1", "text": "abc", "stream": "stdout", "more": True})
    assert piece.plain == "web-1  | abc …"


def test_timestamps_when_asked() -> None:
    formatter = logs.Formatter(timestamps=True)
    line = {"instance": "a", "text": "x", "time": "2026-11-25T19:00:00.000000001Z", "stream": "stdout"}
    assert formatter.render(line).plain == "a | 2026-11-25T19:00:00.000000001Z x"


def test_query_params_leave_out_what_is_not_given() -> None:
    assert logs.query_params(q="error", since=None, tail=5) == {"q": "error", "tail": "5"}
