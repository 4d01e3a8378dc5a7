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
