"""Keep the access token and phone numbers out of the HTTP libraries' log records, at every level.

Every `IntercomClient` registers its token (`protect`); while it exists, `SECRET_FILTER` on each
logger of `LOGGER_NAMES` redacts it and masks phone numbers in every record (docs/security.md).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

from prefect_intercom.privacy import mask_phone_numbers, show_phones
from prefect_intercom.redaction import Redactor

# The loggers of the HTTP stack under the client (a filter sees only its own logger's records,
# not those of its children, so each one is named).
LOGGER_NAMES = (
    "httpx",
    *(f"httpcore{child}" for child in ("", ".connection", ".http11", ".http2", ".proxy", ".socks")),
    *(f"hpack{child}" for child in ("", ".hpack", ".table")),
    "h2",
    *(f"aiohttp{child}" for child in ("", ".access", ".client", ".internal", ".server", ".web", ".websocket")),
    "httpx_aiohttp",
    "asyncio",
)


class SecretLogFilter(logging.Filter):
    """Redacts the tokens of every live client and masks phone numbers in each record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean `record` in place (message, arguments, traceback and stack text); keep it."""
        redactors, mask = _active, not show_phones()  # the live tokens as they are now, for the whole record
        if redactors or mask:
            redact_record(record, lambda text: _clean(text, redactors, mask))
        return True


SECRET_FILTER = SecretLogFilter()
# Reentrant: the cyclic collector may run a dead owner's `_release` inside `protect`, in the same thread,
# at any allocation under the lock (seen: a test run hung there).
_lock = threading.RLock()
_counts: Counter[str] = Counter()
_redactors: dict[str, Redactor] = {}
_active: tuple[Redactor, ...] = ()
_owners: weakref.WeakSet[Any] = weakref.WeakSet()


def protect(owner: Any, secret: str) -> None:
    """Redact `secret` from the HTTP libraries' log records for as long as `owner` exists.

    Cheap after the first call for the same owner. Attaches `SECRET_FILTER` to each logger of
    `LOGGER_NAMES` that lacks it (again if logging was reconfigured since).

    Args:
        owner: The object whose lifetime bounds the protection (an `IntercomClient`).
        secret: The token.
    """
    if not secret or owner in _owners:
        return
    global _active
    with _lock:
        if owner in _owners:
            return
        _owners.add(owner)
        _counts[secret] += 1
        if secret not in _redactors:
            _redactors[secret] = Redactor(secret)
            _active = tuple(_redactors.values())
        weakref.finalize(owner, _release, secret)
    install()


def install() -> None:
    """Attach `SECRET_FILTER` to every logger of `LOGGER_NAMES` (idempotent)."""
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)


def redact_record(record: logging.LogRecord, redact: Callable[[str], str]) -> None:
    """Redact `record` in place: its message (formatted with its arguments), traceback and stack."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: redact what there is
        message = f"{record.msg} {record.args!r}"
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:  # the traceback text stands in for the exception, which holds the token
            record.exc_text, record.exc_info = clean, None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _clean(text: str, redactors: tuple[Redactor, ...], mask: bool) -> str:
    """`text` without any piece of the tokens of `redactors`, then, when `mask`, every E.164-looking number masked."""
    for redactor in redactors:
        text = redactor.redact(text)
    return mask_phone_numbers(text) if mask else text


def _release(secret: str) -> None:
    global _active
    with _lock:
        _counts[secret] -= 1
        if not _counts[secret]:  # the last owner of `secret` is gone
            del _counts[secret], _redactors[secret]
            _active = tuple(_redactors.values())
