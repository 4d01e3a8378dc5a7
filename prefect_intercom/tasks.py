"""Prefect tasks: thin wrappers that put arguments through the request pipeline."""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import get_run_logger, task
from prefect._internal.compatibility.async_dispatch import async_dispatch

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS
from prefect_intercom.client import IntercomClient
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import IntercomError
from prefect_intercom.events import redirect_events
from prefect_intercom.idempotency import SentOncePerFlowRun, send_guard
from prefect_intercom.pacing import Pacer
from prefect_intercom.prepared import PreparedRequest
from prefect_intercom.privacy import mask_phone
from prefect_intercom.responses import IntercomResponse, PhoneCallRedirect
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy


def _client(
    credentials: IntercomCredentials, logger: Any, retry: RetryPolicy | None, global_rate_limit: str | None
) -> IntercomClient:
    """A client for one task run: `retry` (each retry logged as a warning), paced by the shared limit if named."""

    def log_retry(error: IntercomError, attempt: int, wait: float) -> None:
        logger.warning("Attempt %d failed (%s); retrying in %.1f s", attempt, error, wait)

    pacer = Pacer(headers=False, global_rate_limit=global_rate_limit) if global_rate_limit else None
    return credentials.get_client(retry=retry, pacer=pacer, on_retry=log_retry)


def phone_call_redirect_body(phone: str, custom_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body for a phone call redirect (custom attributes only when given)."""
    return {"phone": phone} | ({"custom_attributes": custom_attributes} if custom_attributes is not None else {})


def _body_from_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    return phone_call_redirect_body(inputs["phone"], inputs.get("custom_attributes"))


SENT_ONCE_PER_FLOW_RUN = SentOncePerFlowRun(endpoint=PHONE_CALL_REDIRECTS, body_from_inputs=_body_from_inputs)
"""The tasks' cache policy: a flow retry returns an earlier 2xx instead of texting again (see docs/flow-retries.md)."""

# Each call texts a person: never cache a send by its inputs alone and never retry it blindly
# (the retry policy that knows which failures are safe to repeat is `retry.RetryPolicy`,
# applied by the client; Prefect's own task retries would repeat any failure). The only cache
# is per flow run (`idempotency.SentOncePerFlowRun`); its result is persisted as JSON.
_SEND_TASK_OPTIONS: dict[str, Any] = {
    "name": "create-phone-call-redirect",
    "cache_policy": SENT_ONCE_PER_FLOW_RUN,
    "result_serializer": "json",
    "retries": 0,
}


@task(**_SEND_TASK_OPTIONS)
async def acreate_phone_call_redirect(
    credentials: IntercomCredentials,
    phone: str,
    custom_attributes: dict[str, Any] | None = None,
    retry: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    global_rate_limit: str | None = None,
) -> PhoneCallRedirect:
    """Deflect a phone caller to the Intercom Messenger: Intercom texts `phone` a Messenger link.

    Async version of `create_phone_call_redirect`; see there for arguments and errors.
    """
    logger = get_run_logger()
    async with _client(credentials, logger, retry, global_rate_limit) as client:
        with redirect_events(client.base_url) as answer:
            prepared = client.prepare(PHONE_CALL_REDIRECTS, phone_call_redirect_body(phone, custom_attributes))
            guard = send_guard(retry)
            async with guard.asending() if guard else contextlib.nullcontext():
                log_sending(logger, prepared)
                response = await client.asend(prepared)
            answer.update(status=response.status_code, request_id=response.request_id)
    log_answer(logger, response)
    return PhoneCallRedirect.from_response(response)


@async_dispatch(acreate_phone_call_redirect)
@task(**_SEND_TASK_OPTIONS)
def create_phone_call_redirect(
    credentials: IntercomCredentials,
    phone: str,
    custom_attributes: dict[str, Any] | None = None,
    retry: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    global_rate_limit: str | None = None,
) -> PhoneCallRedirect:
    """Deflect a phone caller to the Intercom Messenger: Intercom texts `phone` a Messenger link.

    The body is validated against the JSON Schema generated from Intercom's documentation
    before anything is sent. A failed call is repeated only when it provably did not take
    effect (429 rate limited, connection refused), as `retry` allows; a 5xx, a timeout or a
    dropped connection is raised as it is, since a repeated call may text the person again.

    When Prefect retries the flow run, a call that got a 2xx in an earlier attempt is not
    sent again: it returns the earlier result (state `Cached`). "The same call" is the same
    flow run, Intercom app and body, and the same occurrence among identical calls; see
    `docs/flow-retries.md`. Opt out with `.with_options(cache_policy=NO_CACHE)`.

    Args:
        credentials: The `IntercomCredentials` block to use.
        phone: The caller's number in E.164 format, e.g. `+14155550100`.
        custom_attributes: Attributes to set on the user or lead, e.g. `{"issue_type": "Billing"}`;
            relationship attributes take a custom object instance list.
        retry: The retry policy (default: 429s and connect failures only, bounded);
            `RetryPolicy.never()` sends exactly once; `RetryPolicy(retry_unknown=True)`
            also repeats failures that may have texted the person.
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay that
            paces every sender of the same Intercom app (see `prefect_intercom.pacing`).

    Returns:
        Intercom's answer: `type`, `phone` and/or `url`, `request_id`, and any other field.

    Raises:
        IntercomValidationError: The body is invalid; nothing was sent.
        IntercomAPIError: Intercom refused the call (status, error code, request id).
        IntercomTransportError: No answer came back; see its `outcome`.
        EarlierAttemptUnknownError: On a flow retry, an earlier attempt's outcome of this
            call is unknown (e.g. a 5xx), and `retry` does not allow repeating it; nothing was sent.

    Example:
        ```python
        from prefect import flow
        from prefect_intercom import IntercomCredentials, create_phone_call_redirect

        @flow
        def deflect(phone: str):
            credentials = IntercomCredentials.load("intercom")
            return create_phone_call_redirect(credentials, phone, {"issue_type": "Billing"})
        ```
        In an `async` flow, `await create_phone_call_redirect(...)` runs the async version.
    """
    logger = get_run_logger()
    with _client(credentials, logger, retry, global_rate_limit) as client:
        with redirect_events(client.base_url) as answer:
            prepared = client.prepare(PHONE_CALL_REDIRECTS, phone_call_redirect_body(phone, custom_attributes))
            guard = send_guard(retry)
            with guard.sending() if guard else contextlib.nullcontext():
                log_sending(logger, prepared)
                response = client.send(prepared)
            answer.update(status=response.status_code, request_id=response.request_id)
    log_answer(logger, response)
    return PhoneCallRedirect.from_response(response)


# `create_phone_call_redirect` is a function that runs the sync or the async task by context;
# it also carries the sync task's `submit`, `map` and `with_options` (e.g. the flow-retry
# opt-out, `create_phone_call_redirect.with_options(cache_policy=NO_CACHE)`).
for _method in ("submit", "map", "with_options"):
    setattr(create_phone_call_redirect, _method, getattr(create_phone_call_redirect.__wrapped__, _method))


def log_sending(logger: Any, prepared: PreparedRequest) -> None:
    """Log the request about to go: method, URL, `Intercom-Version`, the phone masked, the custom attribute names."""
    attributes = sorted(prepared.body.get("custom_attributes") or {})
    logger.info(
        "Sending %s %s (Intercom-Version %s) for %s with custom attributes %s",
        prepared.method,
        prepared.url,
        prepared.headers["Intercom-Version"],
        mask_phone(prepared.body.get("phone")),
        attributes or "none",
    )


def log_answer(logger: Any, response: IntercomResponse) -> None:
    """Log a successful answer: status, latency, request id, rate limit left (a cut or non-JSON body: a WARNING)."""
    if response.truncated is not None:
        logger.warning(
            "Intercom answered %s, so the SMS was sent, but the answer was %s", response.status_code, response.truncated
        )
    if response.unparsed_body is not None:
        logger.warning(
            "Intercom answered %s with a body that is not a JSON object: %r",
            response.status_code,
            response.unparsed_body,
        )
    logger.info(
        "Intercom answered %s in %.0f ms (request_id %s, rate limit remaining %s)",
        response.status_code,
        response.elapsed_ms,
        response.request_id or "none",
        response.rate_limit.remaining if response.rate_limit.remaining is not None else "unknown",
    )
