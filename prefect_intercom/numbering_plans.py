"""Numbering plans: refuse E.164 numbers that cannot exist in any country (docs/validation.md).

After the schema's shape check, `phonenumbers.is_possible_number` checks the country code and
the number's length, and a national prefix kept after the country code is refused.
`PREFECT_INTERCOM_NUMBERING_PLANS=0` turns the check off (read at every check).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumberFormat,
    ValidationResult,
)

from prefect_intercom.privacy import mask_phone

NUMBERING_PLANS_ENV = "PREFECT_INTERCOM_NUMBERING_PLANS"
_OFF = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class ImpossibleNumber:
    """Why a number in E.164 shape cannot exist: a message and a hint, the number in both masked."""

    message: str
    hint: str


def impossible_number(e164: str) -> ImpossibleNumber | None:
    """Why `e164` cannot be a phone number, or `None` when it can (or the check is off).

    Args:
        e164: A string already in E.164 shape (`+`, a non-zero digit, 6 to 14 more digits).

    Returns:
        `None` when `phonenumbers.is_possible_number` accepts it, else the reason.
    """
    if os.environ.get(NUMBERING_PLANS_ENV, "").strip().lower() in _OFF:  # read at every check
        return None
    shape = _shape(e164)
    if shape is not None and shape in _POSSIBLE_SHAPES:
        return None
    impossible = _impossible(e164)
    if impossible is None and shape is not None:
        _POSSIBLE_SHAPES.add(shape)
    return impossible


# (country code, digits after it) of numbers found possible, for numbers no national prefix can start.
_POSSIBLE_SHAPES: set[tuple[int, int]] = set()


def _shape(e164: str) -> tuple[int, int] | None:
    """What `phonenumbers` decides `e164` by, `(country code, digits after it)`, when that is all it uses.

    `phonenumbers.parse` splits off the country code as `_extract_country_code` does (codes are
    prefix-free) and strips a national prefix only where the plan's `national_prefix_for_parsing`
    matches the start of the rest; where it does not, possibility and the E.164 writing depend on
    the country code and the length alone. `None`: a prefix might be stripped, or no code matched.
    """
    digits = e164[1:]
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            prefix = _national_prefix(code)
            rest = digits[size:]
            if prefix is not None and prefix.match(rest):
                return None
            return code, len(rest)
    return None


@cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """The plan's `national_prefix_for_parsing` as `phonenumbers` compiles it, `None` when it has none."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    return re.compile(pattern) if pattern else None


def _impossible(e164: str) -> ImpossibleNumber | None:
    """`impossible_number` worked out by `phonenumbers` (no cache)."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException as error:
        if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return _unknown_country(e164)
        return ImpossibleNumber(
            f"{_quoted(e164)} is not a possible phone number ({error._msg})",
            "check the country code and the digits after it",
        )
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        written = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        if written == e164:
            return None
        return ImpossibleNumber(
            f"{_quoted(e164)} keeps a national prefix after the country code +{number.country_code}; "
            "E.164 leaves it out",
            f"remove the national prefix after +{number.country_code}: {mask_phone(written)}",
        )
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        return _unknown_country(e164)
    code = number.country_code
    national = len(phonenumbers.national_significant_number(number))
    expected = _lengths(_possible_lengths(code))
    return ImpossibleNumber(
        f"{_quoted(e164)} cannot exist: numbers with country code +{code} have {expected} digits after it, "
        f"this one has {national}",
        f"check for a missing or extra digit: +{code} numbers have {expected} digits after the country code",
    )


def _unknown_country(e164: str) -> ImpossibleNumber:
    # Country codes are one to three digits and prefix-free: the first three digits name it.
    prefix = e164[:4]
    return ImpossibleNumber(
        f"{_quoted(e164)} cannot exist: no country uses {prefix}",
        f"no country uses {prefix}: check the country code (e.g. +1 for the US and Canada, +44 for the UK)",
    )


@cache
def _possible_lengths(country_code: int) -> tuple[int, ...]:
    """The lengths of national numbers the plan of `country_code` allows (metadata looked up once per code)."""
    region = phonenumbers.region_code_for_country_code(country_code)  # "001" for +800, +808, +870, ...
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None or metadata.general_desc is None:
        return ()
    return tuple(sorted(set(metadata.general_desc.possible_length or ())))


def _lengths(lengths: tuple[int, ...]) -> str:
    """`10`, `9 or 10`, `7 to 10`, or `7, 9 or 10`."""
    if not lengths:
        return "a different number of"
    if len(lengths) == 1:
        return str(lengths[0])
    if len(lengths) > 2 and list(lengths) == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]} to {lengths[-1]}"
    return ", ".join(map(str, lengths[:-1])) + f" or {lengths[-1]}"


def _quoted(e164: str) -> str:
    return repr(mask_phone(e164))


def e164_written(e164: str) -> str:
    """`e164` as libphonenumber writes it in E.164: a national prefix after the country code left out.

    Returns `e164` itself when it does not parse (the numbering-plan check names that case).
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
