"""Numbering plans: refuse E.164 numbers that cannot exist in any country.

The schema's E.164 pattern only checks the shape (`+`, then 7 to 15 digits). After it,
`phonenumbers.is_possible_number` (Google's libphonenumber metadata) checks the country code
exists and the number's length fits that country's plan: `+1415555010` (one digit short for
North America), `+141555501000` (one too many) and `+999123456789` (no country uses +999) are
refused. `is_valid_number` is deliberately not used: it also checks number ranges, and would
refuse ranges a country opened after the installed metadata was published.

A number written with its national (trunk) prefix after the country code, as people copy it
from `+44 (0)20 7946 0958`, is refused too: `+4402079460958` has E.164's shape, but E.164 leaves
the prefix out, and the message and hint give the number as libphonenumber writes it
(`+442079460958`). Every example number libphonenumber's metadata holds, of every region and
type, is written the same way back, so this refuses no number in its E.164 form.

The check is on by default; set `PREFECT_INTERCOM_NUMBERING_PLANS=0` (or `false`, `no`, `off`)
to turn it off, e.g. for test numbers a carrier accepts although no plan lists them. The switch
is read at every check, so it applies to the tasks and the batches of the process alike.
Numbers quoted in messages and hints are masked (see `prefect_intercom.privacy`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

from prefect_intercom.privacy import mask_phone

NUMBERING_PLANS_ENV = "PREFECT_INTERCOM_NUMBERING_PLANS"
_OFF = frozenset({"0", "false", "no", "off"})
_NON_GEOGRAPHIC = "001"  # phonenumbers' region code for +800, +808, +870, +878, +881, +882, +883, +888, +979


@dataclass(frozen=True)
class ImpossibleNumber:
    """Why a number in E.164 shape cannot exist: a message and a hint, the number in both masked."""

    message: str
    hint: str


def numbering_plans_checked() -> bool:
    """Whether numbers are checked against the numbering plans (`PREFECT_INTERCOM_NUMBERING_PLANS`; on by default)."""
    return os.environ.get(NUMBERING_PLANS_ENV, "").strip().lower() not in _OFF


def impossible_number(e164: str) -> ImpossibleNumber | None:
    """Why `e164` cannot be a phone number, or `None` when it can (or the check is off).

    Args:
        e164: A string already in E.164 shape (`+`, a non-zero digit, 6 to 14 more digits).

    Returns:
        `None` when `phonenumbers.is_possible_number` accepts it, else the reason.
    """
    if not numbering_plans_checked():
        return None
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
    region = phonenumbers.region_code_for_country_code(country_code)
    if region == _NON_GEOGRAPHIC:
        metadata = PhoneMetadata.metadata_for_nongeo_region(country_code)
    else:
        metadata = PhoneMetadata.metadata_for_region(region)
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
