"""The retry policy: which failures are repeated, how long to wait, and the bounds."""

from __future__ import annotations

import datetime as dt
import random
import socket

import pytest

from prefect_intercom import (
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomConfigurationError,
    IntercomCredentials,
    IntercomError,
    IntercomRateLimitError,
    IntercomServerError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
    RetryPolicy,
)
from prefect_intercom.retry import acall_with_retry, call_with_retry, outcome_of
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
NO_JITTER = RetryPolicy(jitter=0.0)


def rate_limited(retry_after: float | None = None, reset_in: float | None = None) -> IntercomRateLimitError:
    reset_at = NOW + dt.timedelta(seconds=reset_in) if reset_in is not None else None
    return IntercomRateLimitError(429, retry_after=retry_after, reset_at=reset_at, error_code="rate_limit_exceeded")


def transport(outcome: Outcome) -> IntercomTransportError:
    return IntercomTransportError("boom", outcome=outcome, url="http://127.0.0.1:1/phone_call_redirects")


CONNECT_FAILED = transport(Outcome.NOT_SENT)
DROPPED = transport(Outcome.UNKNOWN)


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome", "retried"),
    [
        (rate_limited(1), Outcome.NOT_SENT, True),
        (CONNECT_FAILED, Outcome.NOT_SENT, True),
        (DROPPED, Outcome.UNKNOWN, False),
        (IntercomServerError(503), Outcome.UNKNOWN, False),
        (IntercomServerError(500), Outcome.UNKNOWN, False),
        (IntercomAPIError(400, error_code="invalid_phone_number"), Outcome.NOT_SENT, False),
        (IntercomAuthenticationError(401), Outcome.NOT_SENT, False),
        (IntercomAuthenticationError(403), Outcome.NOT_SENT, False),
        (IntercomAPIError(404), Outcome.NOT_SENT, False),
        (IntercomAPIError(422), Outcome.NOT_SENT, False),
        (IntercomValidationError("phone_call_redirects", []), Outcome.NOT_SENT, False),
        (IntercomConfigurationError("no"), Outcome.NOT_SENT, False),
        (ValueError("not ours"), Outcome.NOT_SENT, False),
    ],
)
def test_each_failure_has_one_outcome_and_the_default_policy_retries_only_what_never_took_effect(
    error: BaseException, outcome: Outcome, retried: bool
) -> None:
    assert outcome_of(error) is outcome
    assert (NO_JITTER.delay(error, 1, 0.0, now=NOW) is not None) is retried
    unknown_too = RetryPolicy(retry_unknown=True, jitter=0)
    assert (unknown_too.delay(error, 1, 0.0, now=NOW) is not None) is (retried or outcome is Outcome.UNKNOWN)


# --- decisions ------------------------------------------------------------------------------


def test_429_waits_for_retry_after_first() -> None:
    assert NO_JITTER.delay(rate_limited(retry_after=3, reset_in=9), 1, 0.0, now=NOW) == 3


def test_429_without_retry_after_waits_for_the_reset_time() -> None:
    assert NO_JITTER.delay(rate_limited(reset_in=7.5), 1, 0.0, now=NOW) == pytest.approx(7.5)


def test_429_whose_reset_has_passed_or_is_missing_backs_off() -> None:
    assert NO_JITTER.delay(rate_limited(reset_in=-5), 1, 0.0, now=NOW) == NO_JITTER.backoff
    assert NO_JITTER.delay(rate_limited(), 2, 0.0, now=NOW) == NO_JITTER.backoff * 2


def test_jitter_only_ever_adds_and_is_bounded() -> None:
    policy = RetryPolicy(jitter=0.25)
    rng = random.Random(4)
    waits = [policy.delay(rate_limited(retry_after=2), 1, 0.0, rng=rng) for _ in range(500)]
    assert all(2 <= wait <= 2.5 for wait in waits)
    assert len({round(wait, 6) for wait in waits}) > 400  # actually spread out


def test_connect_failures_back_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(jitter=0.0, backoff=0.5, max_backoff=3, max_attempts=10, max_wait=1000)
    assert [policy.delay(CONNECT_FAILED, attempt, 0.0) for attempt in range(1, 7)] == [0.5, 1, 2, 3, 3, 3]


@pytest.mark.parametrize("error", [*(IntercomServerError(status) for status in (500, 502, 503)), DROPPED])
def test_maybe_sent_is_not_retried_by_default(error: IntercomError) -> None:
    assert RetryPolicy().delay(error, 1, 0.0) is None


@pytest.mark.parametrize("error", [IntercomServerError(503), DROPPED])
def test_maybe_sent_is_retried_only_when_opted_in(error: IntercomError) -> None:
    assert RetryPolicy(retry_unknown=True, jitter=0.0).delay(error, 1, 0.0) == 0.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_refusals_are_never_retried_even_when_opted_in(status: int) -> None:
    error = IntercomAuthenticationError(status) if status in (401, 403) else IntercomAPIError(status)
    assert RetryPolicy(retry_unknown=True, max_attempts=100).delay(error, 1, 0.0) is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.delay(CONNECT_FAILED, 2, 0.0) is not None
    assert policy.delay(CONNECT_FAILED, 3, 0.0) is None
    assert RetryPolicy.never().delay(rate_limited(retry_after=0), 1, 0.0) is None


def test_total_wait_is_bounded() -> None:
    policy = RetryPolicy(max_wait=10, jitter=0.0)
    assert policy.delay(rate_limited(retry_after=4), 1, 6.0) == 4
    assert policy.delay(rate_limited(retry_after=4), 2, 6.5) is None  # 6.5 + 4 > 10
    assert policy.delay(rate_limited(retry_after=3600), 1, 0.0) is None  # a reset beyond the budget


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(jitter=-1)


# --- the loop -------------------------------------------------------------------------------


def test_loop_retries_then_returns_and_reports_each_retry() -> None:
    failures = [rate_limited(retry_after=1), CONNECT_FAILED]
    slept: list[float] = []
    seen: list[tuple[int, float]] = []

    def once() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    result = call_with_retry(
        once, NO_JITTER, sleep=slept.append, on_retry=lambda error, attempt, wait: seen.append((attempt, wait))
    )
    assert result == "ok"
    assert slept == [1, 0.5 * 2]
    assert seen == [(1, 1), (2, 1.0)]


def test_loop_raises_the_last_failure_with_its_attempt_count() -> None:
    def once() -> None:
        raise IntercomServerError(503)

    with pytest.raises(IntercomServerError) as caught:
        call_with_retry(once, RetryPolicy(retry_unknown=True, max_attempts=3, jitter=0), sleep=lambda _: None)
    assert caught.value.attempts == 3


def test_loop_without_policy_sends_once() -> None:
    calls = []

    def once() -> None:
        calls.append(1)
        raise CONNECT_FAILED

    with pytest.raises(IntercomTransportError):
        call_with_retry(once, None, sleep=lambda _: pytest.fail("must not wait"))
    assert calls == [1]


async def test_async_loop_follows_the_same_policy() -> None:
    failures = [rate_limited(retry_after=0.25)]
    slept: list[float] = []

    async def once() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await acall_with_retry(once, NO_JITTER, sleep=sleep) == "ok"
    assert slept == [0.25]


# --- through the real pipeline, over loopback -----------------------------------------------


def test_client_retries_a_real_429_after_the_window_resets() -> None:
    with Sandbox(token=SECRET_TOKEN, rate_limit=1, rate_limit_window=1) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        with credentials.get_client(retry=RetryPolicy(jitter=0.1)) as client:
            first = client.request("phone_call_redirects", {"phone": "+14155550100"})
            second = client.request("phone_call_redirects", {"phone": "+14155550101"})
        statuses = [(entry.body["phone"], entry.status) for entry in sandbox.received]
    assert (first.attempts, second.attempts) in ((1, 2), (1, 1))  # 1 if the window flipped in between
    assert statuses[-1] == ("+14155550101", 200)
    assert [status for _, status in statuses].count(200) == 2
    assert len(sandbox.accepted) == 2


def test_client_does_not_retry_a_503_by_default_but_does_when_opted_in() -> None:
    with Sandbox(token=SECRET_TOKEN, faults={"503": 1.0}) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        with credentials.get_client(retry=RetryPolicy()) as client, pytest.raises(IntercomServerError) as caught:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert caught.value.attempts == 1 and len(sandbox.received) == 1
        opted_in = RetryPolicy(retry_unknown=True, max_attempts=3, backoff=0.01)
        with credentials.get_client(retry=opted_in) as client, pytest.raises(IntercomServerError) as caught:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert caught.value.attempts == 3 and len(sandbox.received) == 4


def test_client_never_retries_a_400() -> None:
    with Sandbox(token=SECRET_TOKEN) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        policy = RetryPolicy(retry_unknown=True, max_attempts=5)
        with credentials.get_client(retry=policy) as client, pytest.raises(IntercomAPIError) as caught:
            client.request("phone_call_redirects", {"phone": "+15005550001"})  # the sandbox's sms_failed number
        assert (caught.value.status_code, caught.value.attempts, len(sandbox.received)) == (400, 1, 1)


def test_client_retries_a_refused_connection_and_reports_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=f"http://127.0.0.1:{port}")
    policy = RetryPolicy(max_attempts=3, backoff=0.01)
    with credentials.get_client(retry=policy) as client, pytest.raises(IntercomTransportError) as caught:
        client.request("phone_call_redirects", {"phone": "+14155550100"})
    assert caught.value.outcome is Outcome.NOT_SENT
    assert caught.value.attempts == 3
    assert SECRET_TOKEN not in str(caught.value)


# --- the single task exposes the policy -----------------------------------------------------


def test_the_task_retries_429s_by_default_within_its_budget_and_never_when_told(prefect_server: None) -> None:
    from prefect import flow

    from prefect_intercom import create_phone_call_redirect

    with Sandbox(token=SECRET_TOKEN, faults={"429": 1.0}, retry_after=0.01) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)

        @flow
        def deflect(retry: RetryPolicy | None) -> None:
            create_phone_call_redirect(credentials, "+14155550100", retry=retry)

        for policy, attempts in ((RetryPolicy(), 6), (RetryPolicy.never(), 1)):
            sandbox.reset()
            state = deflect(policy, return_state=True)
            with pytest.raises(IntercomRateLimitError) as caught:
                state.result()
            assert len(sandbox.received) == attempts
            assert sandbox.accepted == []
        assert SECRET_TOKEN not in str(caught.value)
