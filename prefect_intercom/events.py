"""Prefect events for Automations: what a send or a batch did, never a phone number or the token.

`intercom.phone_call_redirect.<outcome>` for one send, `intercom.batch.finished` (and
`.unknown`, `.not_sent`) for a batch: docs/events.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from prefect.events import emit_event

from prefect_intercom.errors import IntercomError, IntercomValidationError
from prefect_intercom.outcomes import BatchSummary, Outcome
from prefect_intercom.retry import outcome_of

EVENT_PREFIX = "intercom."


def emit_redirect_outcome(outcome: Outcome, base_url: str, **payload: Any) -> None:
    """Emit `intercom.phone_call_redirect.<outcome>` for one single send (payload: status, code, request id)."""
    host = urlsplit(base_url).hostname or "unknown"
    emit_event(
        event=f"{EVENT_PREFIX}phone_call_redirect.{outcome.value}",
        resource={"prefect.resource.id": f"intercom.host.{host}", "prefect.resource.name": host},
        payload={key: value for key, value in payload.items() if value is not None},
    )


@contextmanager
def redirect_events(base_url: str) -> Iterator[dict[str, Any]]:
    """Around one single send: emit its outcome's event, whatever happens (the error propagates).

    Yields a dict the caller fills with the answer (`status`, `request_id`) on success.
    """
    answer: dict[str, Any] = {}
    try:
        yield answer
    except IntercomError as error:  # an invalid request was refused before it was sent: no status, code or id
        emit_redirect_outcome(
            Outcome.REJECTED if isinstance(error, IntercomValidationError) else outcome_of(error),
            base_url,
            status=getattr(error, "status_code", None),
            error_code=getattr(error, "error_code", None),
            request_id=getattr(error, "request_id", None),
        )
        raise
    emit_redirect_outcome(Outcome.SENT, base_url, **answer)


def emit_batch_finished(report: BatchSummary) -> None:
    """Emit `intercom.batch.finished`, and `intercom.batch.unknown` / `.not_sent` when it left anyone so."""
    resource = {
        "prefect.resource.id": f"intercom.batch.{hashlib.sha256(report.batch_key.encode()).hexdigest()[:24]}",
        "prefect.resource.name": report.batch_key,
    }
    payload = {
        "batch_key": report.batch_key,
        "run": report.run,
        "counts": dict(report.counts),
        "stopped": report.stopped,
        "elapsed_seconds": round(report.elapsed, 3),
    }
    left = [outcome.value for outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT) if report.counts[outcome.value]]
    for name in ("finished", *left):  # always `finished`, then one event per outcome the batch left anyone in
        emit_event(event=f"{EVENT_PREFIX}batch.{name}", resource=resource, payload=payload)
