"""Redaction: no run of `PIECE` characters of the secret survives, in any form a server echoes it."""

from __future__ import annotations

import pytest

from prefect_intercom.redaction import PIECE, REDACTED, Redactor, cut, replace_spans, unchanged

SECRET = "tok_abcdefghijklmnop"


@pytest.mark.parametrize(
    "echo",
    [
        SECRET,
        f"Bearer {SECRET}",
        SECRET.upper(),
        "tok%5Fabcdefghijklmnop",  # URL-encoded
        "tok\\u005fabcdefghijklmnop",  # JSON-escaped
        "tok&#95;abcdefghijklmnop",  # an HTML character reference
        SECRET[3 : 3 + PIECE],  # a piece just long enough
        "ok\\\\u005fabcde",  # JSON-escaped twice (a body whose message holds `\\u005f`): the only piece
        "ok\\\\x5fabcde",
    ],
)
def test_every_form_of_the_secret_is_redacted(echo: str) -> None:
    redacted = Redactor(SECRET).redact(f"echo: {echo}.")

    assert REDACTED in redacted
    assert "abcdefgh" not in redacted.lower()


def test_a_piece_shorter_than_piece_and_texts_without_the_secret_stay_as_they_are() -> None:
    redactor = Redactor(SECRET)

    assert redactor.redact(SECRET[: PIECE - 1]) == SECRET[: PIECE - 1]
    assert redactor.redact("nothing secret here, 100% & \\ fine") == "nothing secret here, 100% & \\ fine"
    assert repr(redactor) == "Redactor([REDACTED])"


def test_an_empty_secret_redacts_nothing_as_documented() -> None:
    redactor = Redactor("")

    for text in ("", "Bearer tok_abcdefghijklmnop", "%41\\u0041&amp; 100%"):
        assert redactor.redact(text) == text


def test_cut_collapses_white_space_hides_control_characters_and_marks_the_cut() -> None:
    assert cut("a  b\n\tc", 10) == "a b c"
    assert cut("red \x1b[31m", 20) == "red \ufffd[31m"
    assert cut("x" * 20, 10) == "xxxxxxx..."


def test_replace_spans_merges_touching_spans_and_unchanged_is_the_identity() -> None:
    assert replace_spans("0123456789", [(1, 3), (3, 5), (8, 9)], "#") == "0#567#9"
    assert unchanged("as it is") == "as it is"


@pytest.mark.parametrize(
    "text",
    [
        f"ascii {SECRET.upper()} end",  # ASCII: lowered by `str.lower`
        f"non-ASCII é {SECRET.upper()} ü",  # lowered by the ASCII-only table
        f"\u0130{SECRET[2:10].upper()}\u017f",  # letters that `str.lower` changes beyond ASCII, around a piece
        f"escaped {SECRET[:4]}%41{SECRET[5:]}",  # an escape: every view is searched
    ],
)
def test_pieces_are_found_in_ascii_and_non_ascii_texts_with_or_without_escapes(text: str) -> None:
    redacted = Redactor(SECRET).redact(text)
    assert REDACTED in redacted
    assert not any(SECRET[at : at + PIECE] in redacted.lower() for at in range(len(SECRET) - PIECE + 1))


def test_a_text_shorter_than_a_piece_is_left_as_it_is_and_one_piece_long_is_not() -> None:
    redactor = Redactor(SECRET)
    assert redactor.redact(SECRET[1:PIECE]) == SECRET[1:PIECE]
    assert redactor.redact(SECRET[1 : PIECE + 1]) == REDACTED
