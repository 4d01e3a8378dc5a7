"""Phone numbers are personal data: everything the package writes shows them masked.

`mask_phone("+353871235678")` is `+3538•••5678`; answers are masked for their request's phone
(`mask_known_phone`), log records for every E.164-looking number (`mask_phone_numbers`).
`PREFECT_INTERCOM_SHOW_PHONES=1` shows full numbers, for debugging only (docs/security.md).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from prefect_intercom.redaction import has_escapes, hide_in_views, replace_spans, unchanged

SHOW_PHONES_ENV = "PREFECT_INTERCOM_SHOW_PHONES"
MASK = "•••"
MIN_DIGITS = 5
E164_MIN_DIGITS = 7  # the shortest E.164 number, country code included (`+290 1234`)
_TRUE = frozenset({"1", "true", "yes", "on"})
# What may stand between the digits of one run: spaces, phone punctuation, control and invisible
# format characters (NUL, ESC, DEL, zero-width, bidi marks), and whole terminal escape sequences
# (`\x1b[31m`, whose digits are not the phone's), so that none of them splits a mask.
_GAP = r"[\d \t().\-/\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]|\x1b\[[0-?]*[ -/]*[@-~]"
# A run of digits, with gaps between them, optionally after a '+'.
_PHONE_LIKE = re.compile(rf"(?:\+|%2[Bb])?\d(?:(?:{_GAP})*\d)?")
_ONLY_DIGITS = {code: None for code in range(128) if not "0" <= chr(code) <= "9"}  # str.translate: ASCII
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
# The same run without its prefix (the digits of a known phone, looked for in every view of a text).
_RUN = re.compile(rf"\d(?:(?:{_GAP})*\d)?")


def show_phones() -> bool:
    """Whether full phone numbers are shown (`PREFECT_INTERCOM_SHOW_PHONES=1`; off by default)."""
    return os.environ.get(SHOW_PHONES_ENV, "").strip().lower() in _TRUE


def mask_phone(phone: Any) -> str:
    """A phone number (or any value) as text, with the middle of every digit run hidden: `+1415•••0100`.

    Args:
        phone: The number; other values are shown as `str(value)`, masked the same way.

    Returns:
        The masked text, or the full text when `PREFECT_INTERCOM_SHOW_PHONES=1`; a lone surrogate
        (mis-decoded input) as a backslash escape, so the text can be written as UTF-8.
    """
    text = phone if isinstance(phone, str) else str(phone)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if show_phones() else mask_digits(text)


def mask_digits(text: str) -> str:
    """`text` with every phone-like run of `MIN_DIGITS` or more digits masked (ignores the switch)."""
    return text if len(text) < MIN_DIGITS else _PHONE_LIKE.sub(_mask_run, text)


def mask_phone_numbers(text: str) -> str:
    """`text` with every E.164-looking run masked, in any escaping (ignores the switch).

    For texts of unknown origin where a phone may hide among other numbers (the HTTP
    libraries' log records): a run (spaces and `()-./` allowed between digits) is masked when
    it holds at least as many digits as the shortest E.164 number with its country code (7),
    in the text as it is and URL-, JSON- or HTML-decoded (`%2B%33...`), like `mask_known_phone`
    looks for a known one. Ports, status codes, sizes and dotted IPv4 addresses stay readable;
    longer numbers that are not phones (a UNIX time) are masked too.

    Args:
        text: Any text, e.g. a formatted log record.

    Returns:
        The text, every such run keeping at most its first and last four digits.
    """
    return text if len(text) < E164_MIN_DIGITS else hide_in_views(text, _e164_spans, MASK)


def phone_number_in(text: str) -> str | None:
    """The first run of `text` that looks like a phone number, masked, or `None` (for refusing names).

    A run (spaces and `()-./` allowed between digits) looks like a phone when it holds
    `E164_MIN_DIGITS` or more digits after a `+` (or `%2B`), or 9 or more without one; UUIDs
    are skipped. A date (`2026-12-03`, `20261203`) is no phone; a UNIX time is one.

    Args:
        text: A name, e.g. a batch key.

    Returns:
        The run, masked (to quote it in an error), or `None` when `text` holds no such run.
    """
    for match in _PHONE_LIKE.finditer(_UUID.sub("-", text)):
        run = match.group()
        prefixed = run[:1] in "+%"
        count = len(_digit_positions(run))
        if count >= (E164_MIN_DIGITS if prefixed else 9) and not _IPV4.fullmatch(run):
            return _mask_run(match)
    return None


def mask_known_phone(text: str, phone: Any) -> str:
    r"""`text` with the digits of `phone` masked wherever they appear, in any form a server may echo them.

    The digits are looked for in every phone-like run (spaces and `()-./` allowed between
    digits, after an optional `+`), alone or inside a longer number (`00353...`, a request id),
    in the text as it is and as a reader of each escaping would decode it, as the token's
    redaction does (`prefect_intercom.redaction`): URL-encoded (`%2B`, `%33`), JSON-escaped
    (`\u002b`), HTML character references. A masked escape is hidden whole. Other numbers
    stay readable.

    Args:
        text: Any text, e.g. a message from the server.
        phone: The number to hide (its digits, in any script, `MIN_DIGITS` or more).

    Returns:
        The text, masked (unchanged when `PREFECT_INTERCOM_SHOW_PHONES=1`).
    """
    return text if show_phones() else _mask_known_digits(text, _digits_of(phone))


def _mask_known_digits(text: str, digits: str | None) -> str:
    """`mask_known_phone` for digits worked out already (ignores the switch)."""
    if digits is None or len(text) < len(digits):
        return text
    if text.isascii() and (bare := text[1:] if text[:1] == "+" else text).isdigit():
        return _mask_in_number(text, len(text) - len(bare), digits)  # the phone echoed back: no scan needed
    if not has_escapes(text) and _plainly_without(text, digits):
        return text  # the digits are nowhere in a row, whatever stands between them: nothing to mask
    return hide_in_views(text, partial(_known_spans, digits=digits), MASK)


def _mask_in_number(text: str, offset: int, digits: str) -> str:
    """`_known_spans` hidden for a text of ASCII digits after `offset` characters (a `+`): one run, no escapes."""
    keep, spans = _kept(len(digits)), []
    start = text.find(digits, offset)
    while start != -1:
        spans.append((start + keep, start + len(digits) - keep))
        start = text.find(digits, start + 1)
    return replace_spans(text, spans, MASK) if spans else text


def _e164_spans(text: str) -> list[tuple[int, int]]:
    """The middle digits of every run of `E164_MIN_DIGITS` or more digits in `text` (not IPv4)."""
    spans = []
    scanned = _IPV4.sub(lambda address: "#" * len(address.group()), text)  # an address breaks a run
    for match in _RUN.finditer(scanned):
        positions = _digit_positions(match.group())
        if len(positions) >= E164_MIN_DIGITS:
            keep = _kept(len(positions))
            spans.append((match.start() + positions[keep], match.start() + positions[-keep - 1] + 1))
    return spans


def _plainly_without(text: str, digits: str) -> bool:
    """Whether `text` without terminal escapes surely lacks `digits` in a row (its digits, all else dropped)."""
    return "\x1b" not in text and digits not in _ascii_digits(text)


def _known_spans(text: str, digits: str) -> list[tuple[int, int]]:
    """The spans of `text` to hide: the middle digits of each occurrence of `digits` in a phone-like run."""
    keep, spans = _kept(len(digits)), []
    for match in _RUN.finditer(text):
        run = match.group()
        if _plainly_without(run, digits):
            continue  # the common case, decided without a Python step per character
        positions = _digit_positions(run)
        if len(positions) < len(digits):
            continue
        seen = "".join(_ascii_digit(run[at]) for at in positions)
        start = seen.find(digits)
        while start != -1:
            first, last = positions[start + keep], positions[start + len(digits) - keep - 1]
            spans.append((match.start() + first, match.start() + last + 1))
            start = seen.find(digits, start + 1)
    return spans


def phone_masker(body: Any) -> Callable[[str], str]:
    """A function that masks the phone of a request `body` (`{"phone": ...}`) in any text.

    `mask_known_phone` for one number, its digits and the switch read once, here (make one per answer).
    """
    phone = body.get("phone") if isinstance(body, Mapping) else None
    digits = None if show_phones() else _digits_of(phone)
    return unchanged if digits is None else partial(_mask_known_digits, digits=digits)


def mask_values(value: Any, mask: Callable[[str], str] = mask_phone) -> Any:
    """A JSON value with `mask` applied to every string in it, keys included (for showing bodies).

    Args:
        value: Any JSON value (dicts, lists, strings, numbers).
        mask: What to apply (default: `mask_phone`, which honours the switch).

    Returns:
        A masked copy; numbers of `MIN_DIGITS` or more digits become masked strings.
    """
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {mask(str(key)): mask_values(item, mask) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_values(item, mask) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** (MIN_DIGITS - 1):
        masked = mask(str(value))
        return value if masked == str(value) else masked
    return value


def _digits_of(phone: Any) -> str | None:
    """The digits of `phone` as ASCII when it has `MIN_DIGITS` or more (of any script), else `None`."""
    if not isinstance(phone, str):
        return None
    digits = _ascii_digits(phone)
    return digits if len(digits) >= MIN_DIGITS else None


def _ascii_digits(text: str) -> str:
    """The decimal digits of `text` (of any script) as ASCII digits, all else dropped."""
    if text.isascii():
        return text.translate(_ONLY_DIGITS)  # the common case, without a Python step per character
    return "".join(_ascii_digit(char) for char in text if char.isdecimal())


def _ascii_digit(char: str) -> str:
    """A decimal digit of any script as its ASCII digit."""
    return char if "0" <= char <= "9" else str(unicodedata.decimal(char, 0))


def _digit_positions(run: str) -> list[int]:
    """Where the digits of a phone-like `run` are, not counting those of escape sequences or of a leading `%2B`.

    (`%2B`, a URL-encoded '+', holds a digit of its own.)
    """
    skip = 3 if run[:1] == "%" else 0  # `\d` is `str.isdecimal`; a comprehension beats `finditer` here
    positions = [at for at, char in enumerate(run[skip:], skip) if char.isdecimal()]
    if "\x1b" not in run:
        return positions
    hidden = {at for sequence in _ESCAPE_SEQUENCE.finditer(run) for at in range(*sequence.span())}
    return [at for at in positions if at not in hidden]


def _kept(count: int) -> int:
    """How many digits stay visible at each end of a run of `count` digits (3 or more are hidden)."""
    return min(4, max(1, (count - 3) // 2))


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    positions = _digit_positions(run)
    if len(positions) < MIN_DIGITS:
        return run
    keep = _kept(len(positions))
    return f"{run[: positions[keep - 1] + 1]}{MASK}{run[positions[-keep] :]}"
