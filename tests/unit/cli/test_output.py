"""Formatting for people: ages, event lines, and text from servers never read as markup."""

from __future__ import annotations

import pytest

from dkos.cli import output

from .fakes import event


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (-3, "0s"), (42.9, "42s"), (60, "1m"), (3_599, "59m"), (7_200, "2h"), (86_400 * 12, "12d")],
)
def test_format_age(seconds: float | None, shown: str) -> None:
    assert output.format_age(seconds) == shown


def test_an_event_line_names_the_type_app_instance_and_message() -> None:
    line = output.event_line(event(3, "instance.failed", "exited with code 137", instance="web-7"))

    assert "instance.failed" in line.plain
    assert "web/web-7" in line.plain
    assert line.plain.endswith("exited with code 137")
    assert any("red" in str(span.style) for span in line.spans)


def test_brackets_in_server_text_are_printed_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_renderable(output.event_line(event(1, "instance.failed", "[bold]boom[/bold] [Errno 2]")))

    assert "[bold]boom[/bold] [Errno 2]" in capsys.readouterr().out
