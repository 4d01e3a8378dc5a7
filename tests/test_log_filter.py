"""The log filter: the HTTP libraries' records lose the tokens of live clients and every phone number."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from typing import Any

import pytest

from prefect_intercom import log_filter

TOKEN = "tok_logfilter_abcdefghijklmnop"


class _Owner:
    """Stands in for an `IntercomClient`: the protection lasts as long as it does."""


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("httpcore.http11", logging.DEBUG, __file__, 1, message, args, None)


def test_protect_attaches_the_filter_to_every_http_logger() -> None:
    owner = _Owner()
    log_filter.protect(owner, TOKEN)

    assert all(log_filter.SECRET_FILTER in logging.getLogger(name).filters for name in log_filter.LOGGER_NAMES)


def test_a_record_loses_the_token_and_phone_numbers_while_the_owner_lives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_INTERCOM_SHOW_PHONES", raising=False)
    owner = _Owner()
    log_filter.protect(owner, TOKEN)
    record = _record("header %s for %s", f"Bearer {TOKEN}", "+14155550100")

    assert log_filter.SECRET_FILTER.filter(record) is True  # cleaned, never dropped
    assert TOKEN[:12] not in record.getMessage()
    assert "[REDACTED]" in record.getMessage()
    assert "+1415•••0100" in record.getMessage()

    del owner
    gc.collect()
    later = _record("header %s", f"Bearer {TOKEN}")
    log_filter.SECRET_FILTER.filter(later)
    assert TOKEN in later.getMessage()  # its client is gone: the token is no longer looked for


def test_the_switch_keeps_phones_but_never_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "1")
    owner = _Owner()
    log_filter.protect(owner, TOKEN)
    record = _record("%s %s", TOKEN, "+14155550100")

    log_filter.SECRET_FILTER.filter(record)

    assert record.getMessage() == "[REDACTED] +14155550100"
    del owner


def test_the_tokens_of_every_live_client_are_redacted_and_none_is_looked_for_once_they_are_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_INTERCOM_SHOW_PHONES", "1")  # phones shown: only the tokens are applied
    first, second = _Owner(), _Owner()
    log_filter.protect(first, TOKEN)
    log_filter.protect(second, "other-secret-value")
    both = _record("%s %s", TOKEN, "other-secret-value")

    log_filter.SECRET_FILTER.filter(both)

    assert both.getMessage() == "[REDACTED] [REDACTED]"
    del first, second
    gc.collect()
    neither = _record("%s %s", TOKEN, "other-secret-value")
    log_filter.SECRET_FILTER.filter(neither)
    assert (neither.msg, neither.args) == ("%s %s", (TOKEN, "other-secret-value"))  # nothing applied, nothing changed


def test_a_traceback_holding_the_token_is_replaced_by_its_redacted_text() -> None:
    owner = _Owner()
    log_filter.protect(owner, TOKEN)
    try:
        raise RuntimeError(f"failed with {TOKEN}")
    except RuntimeError as error:
        record = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "boom", None, (type(error), error, None))

    log_filter.redact_record(record, lambda text: text.replace(TOKEN, "[REDACTED]"))

    assert record.exc_info is None
    assert record.exc_text is not None and TOKEN not in record.exc_text and "[REDACTED]" in record.exc_text
    del owner


def test_a_client_collected_while_another_is_protected_does_not_deadlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector may run `_release` of a dead owner inside `protect`, in the same thread, under its lock."""

    class Owner:
        pass

    dead = Owner()
    dead.cycle = dead  # type: ignore[attr-defined]  # only the cyclic collector frees it
    log_filter.protect(dead, "tok_collected_meanwhile_1234")
    del dead
    real_finalize = weakref.finalize

    def finalize_after_a_collection(*args: Any) -> weakref.finalize:
        gc.collect()  # what any allocation under the lock may start: the dead owner's finalizer runs here
        return real_finalize(*args)

    monkeypatch.setattr(log_filter.weakref, "finalize", finalize_after_a_collection)
    done = threading.Event()

    def protect_another() -> None:
        log_filter.protect(Owner(), "tok_protected_now_5678")
        done.set()

    threading.Thread(target=protect_another, daemon=True).start()
    assert done.wait(10), "protect() deadlocked on its own lock while the collector released a dead owner"
    assert "tok_collected_meanwhile_1234" not in log_filter._redactors  # released all the same
