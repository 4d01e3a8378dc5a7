"""Control characters between a phone's digits never split its mask (issue 16: a NUL showed 8 of 11 digits)."""

from __future__ import annotations

import random
import re
from functools import partial

import pytest

from prefect_intercom import privacy
from prefect_intercom.privacy import (
    MASK,
    SHOW_PHONES_ENV,
    _digit_positions,
    mask_known_phone,
    mask_phone,
    mask_phone_numbers,
    phone_masker,
    phone_number_in,
)
from prefect_intercom.redaction import hide_in_views

PHONE = "+14155550100"
SEPARATORS = ["\x00", "\x1b", "\x7f", "\x9b", "\x1b[31m", "\x1b[0;1m", "\u200b", "\u202e", "\ufeff", "\r", "\x0b"]
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def _shown_digits(text: str) -> str:
    """The digits a reader sees (those of a terminal escape sequence are the terminal's, not the phone's)."""
    return "".join(re.findall(r"\d", _ESCAPES.sub("", text)))


@pytest.mark.parametrize("separator", SEPARATORS)
@pytest.mark.parametrize("at", [2, 5, 8, 10])
def test_a_control_character_between_digits_does_not_split_the_mask(separator: str, at: int) -> None:
    hostile = PHONE[:at] + separator + PHONE[at:]
    for masked in (mask_phone(hostile), mask_phone_numbers(hostile), mask_known_phone(hostile, PHONE)):
        assert MASK in masked
        assert _shown_digits(masked) == "14150100", repr(masked)  # 4 + 4 of 11, as without the character
    assert _shown_digits(phone_number_in(f"key-{hostile}") or "") == "14150100"


def test_control_characters_everywhere_still_mask_one_run() -> None:
    hostile = "+1\x004\x1b[2J1\x7f5\u200b5\x0055\x1b0\x9b1\u202e00"
    assert _shown_digits(mask_phone(hostile)) == "14150100"
    assert _shown_digits(mask_known_phone(f"echo: {hostile}", PHONE)) == "14150100"


def test_short_numbers_around_control_characters_stay_readable() -> None:
    assert mask_phone("port 8080\x00ok, 200 OK") == "port 8080\x00ok, 200 OK"
    assert mask_phone_numbers("GET /a 200\x1b[0m 512") == "GET /a 200\x1b[0m 512"


def test_the_masker_of_an_answer_reads_the_switch_once_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHOW_PHONES_ENV, raising=False)
    masker = phone_masker({"phone": "+14155550100"})
    monkeypatch.setenv(SHOW_PHONES_ENV, "1")
    assert masker("+14155550100") == "+1415•••0100"
    assert phone_masker({"phone": "+14155550100"})("+14155550100") == "+14155550100"


def _arabic(digits: str) -> str:
    return "".join(chr(0x660 + int(digit)) for digit in digits)


@pytest.mark.parametrize(
    "text",
    [
        "call +14155550100 now",  # ASCII: digits found by `str.translate`
        f"call +{_arabic('14155550100')} now",  # Arabic-Indic digits: found one character at a time
        "é +1415 555 0100",  # ASCII digits in a non-ASCII text
        f"1415555{_arabic('0100')} ¡",  # digits of two scripts in one run
    ],
)
def test_the_known_phone_is_masked_in_ascii_and_other_scripts_alike(text: str) -> None:
    masked = phone_masker({"phone": "+14155550100"})(text)
    assert MASK in masked
    assert "555" not in masked and _arabic("555") not in masked


def test_digit_positions_are_those_of_the_regex_digit_class() -> None:
    for run in ["1415 555 0100", "%2B14155550100", f"1{_arabic('41')}5\u0e5f5", "1\x1b[31m2345"]:
        expected = [found.start() for found in re.compile(r"\d").finditer(run, 3 if run[0] == "%" else 0)]
        if "\x1b" in run:
            expected = [0, 6, 7, 8, 9]  # the escape sequence's digits are not the phone's
        assert _digit_positions(run) == expected


def test_a_bare_number_is_masked_by_the_shortcut_exactly_as_by_the_general_scan() -> None:
    # `_mask_known_digits` takes a shortcut for a text of ASCII digits (an optional '+'): the phone echoed back.
    rng = random.Random(7)
    changed = 0
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 15)))
        noise = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 30)))
        at = rng.randint(0, len(noise))
        text = rng.choice(["", "+"]) + noise[:at] + digits * rng.randint(0, 3) + noise[at:]
        general = hide_in_views(text, partial(privacy._known_spans, digits=digits), privacy.MASK)
        assert privacy._mask_known_digits(text, digits) == general, (text, digits)
        changed += general != text
    assert changed > 1000  # most texts held the digits: the masks themselves were compared
