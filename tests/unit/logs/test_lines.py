from __future__ import annotations

from dkos.logs import lines


def test_plain_utf8_stays_as_it_is() -> None:
    assert lines.escape("héllo wörld\t✓".encode()) == ("héllo wörld\t✓", False)


def test_invalid_utf8_and_control_bytes_are_escaped_and_marked() -> None:
    assert lines.escape(b"bad \xff\xfe byte") == ("bad \\xff\\xfe byte", True)
    assert lines.escape(b"\x1b[31mred\x1b[0m\x00") == ("\\x1b[31mred\\x1b[0m\\x00", True)


def test_a_crlf_line_ending_is_not_junk() -> None:
    assert lines.escape(b"windows\r") == ("windows", False)


def test_a_line_within_the_limit_is_one_whole_piece() -> None:
    assert lines.split(b"x" * 100, max_bytes=100) == [lines.Piece("x" * 100, 0, False, False)]


def test_an_over_long_line_is_split_into_numbered_pieces_nothing_lost() -> None:
    pieces = lines.split(b"a" * 250, max_bytes=100)
    assert [(p.part, p.more, len(p.text)) for p in pieces] == [(1, True, 100), (2, True, 100), (3, False, 50)]
    assert "".join(p.text for p in pieces) == "a" * 250


def test_pieces_are_cut_where_a_character_starts() -> None:
    data = "é".encode() * 60  # 2 bytes each
    pieces = lines.split(data, max_bytes=51)
    assert all(not p.escaped for p in pieces)
    assert "".join(p.text for p in pieces) == "é" * 60
    assert all(len(p.text.encode()) <= 51 for p in pieces)


def test_a_line_the_engine_cut_stays_marked_as_continued() -> None:
    (piece,) = lines.split(b"short", max_bytes=100, continued=True)
    assert piece.part == 1 and piece.more


def test_binary_junk_without_character_boundaries_is_still_split() -> None:
    pieces = lines.split(b"\x80" * 10, max_bytes=4)
    assert [p.part for p in pieces] == [1, 2, 3]
    assert all(p.escaped for p in pieces)


def test_a_batch_is_taken_whole_only_when_no_line_needs_escaping_or_cutting() -> None:
    assert lines.clean_texts([b"GET /", "é ✓".encode(), b"", b"tab\there"]) == ["GET /", "é ✓", "", "tab\there"]
    for odd in (b"bell\x07", b"crlf\r", b"\xff\xfe", b"x" * 300):
        assert lines.clean_texts([b"fine", odd], max_bytes=256) is None
