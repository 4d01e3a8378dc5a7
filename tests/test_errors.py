"""The exception family survives pickling (Prefect pickles a failed task's exception) and a Prefect task run."""

from __future__ import annotations

import datetime as dt
import inspect
import pickle
import uuid
from collections.abc import Callable

import cloudpickle
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client

from prefect_intercom import errors
from prefect_intercom.batch.report import BatchReport
from prefect_intercom.errors import IntercomError, ValidationIssue
from prefect_intercom.outcomes import Outcome

RESET = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
API_FIELDS = {
    "error_code": "invalid_phone_number",
    "message": "Invalid phone number",
    "request_id": "req-1",
    "errors": [{"code": "invalid_phone_number", "message": "Invalid phone number"}],
    "body": {"type": "error.list"},
    "headers": {"x-request-id": "req-1"},
}


def _stopped() -> errors.BatchStoppedError:
    report = BatchReport(batch_key="campaign-1")
    report.stopped = "the rate-limit window resets beyond the retry budget"
    return errors.BatchStoppedError(report)


# One instance of every exception, built the way the package builds it.
EXAMPLES: dict[type[IntercomError], Callable[[], IntercomError]] = {
    IntercomError: lambda: IntercomError("something failed"),
    errors.IntercomValidationError: lambda: errors.IntercomValidationError(
        "phone_call_redirects", [ValidationIssue("/phone", "is not E.164", "remove spaces")]
    ),
    errors.IntercomConfigurationError: lambda: errors.IntercomConfigurationError("the access token is empty"),
    errors.IntercomTransportError: lambda: errors.IntercomTransportError(
        "ReadTimeout: timed out", outcome=Outcome.UNKNOWN, url="https://api.intercom.io/phone_call_redirects"
    ),
    errors.IntercomRateLimitWaitError: lambda: errors.IntercomRateLimitWaitError(RESET, 7200, 120, waited=3),
    errors.IntercomAPIError: lambda: errors.IntercomAPIError(400, **API_FIELDS),
    errors.IntercomAuthenticationError: lambda: errors.IntercomAuthenticationError(401, error_code="unauthorized"),
    errors.IntercomRateLimitError: lambda: errors.IntercomRateLimitError(
        429, reset_at=RESET, retry_after=1.5, limit=1667, remaining=0, error_code="rate_limit_exceeded"
    ),
    errors.IntercomServerError: lambda: errors.IntercomServerError(503, message="Service Unavailable"),
    errors.EarlierAttemptUnknownError: lambda: errors.EarlierAttemptUnknownError(
        earlier="IntercomServerError 503", flow_run_id=uuid.UUID(int=1), occurrence=2
    ),
    errors.BatchStoppedError: _stopped,
    errors.LedgerError: lambda: errors.LedgerError("cannot write the ledger"),
    errors.LedgerDamageError: lambda: errors.LedgerDamageError("record-00000003 is damaged"),
    errors.LedgerAccessDeniedError: lambda: errors.LedgerAccessDeniedError("refused: grant s3:ListBucket"),
    errors.LedgerLocationError: lambda: errors.LedgerLocationError("local disk on a kubernetes pool"),
    errors.BatchLeaseError: lambda: errors.BatchLeaseError("no lease", batch_key="k", lease_name="intercom-batch-k"),
    errors.BatchKeyBusyError: lambda: errors.BatchKeyBusyError(
        "busy", batch_key="k", lease_name="intercom-batch-k", lease_seconds=60
    ),
    errors.BatchKeyLostError: lambda: errors.BatchKeyLostError(
        "lost", batch_key="k", lease_name="intercom-batch-k", lease_seconds=None
    ),
    errors.EndpointNotFoundError: lambda: errors.EndpointNotFoundError("no endpoint named 'x'"),
    errors.DocsPageError: lambda: errors.DocsPageError(12, "a table row has 3 cells", source="page.txt"),
}


def test_every_exception_of_the_family_has_an_example() -> None:
    family = {
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, IntercomError) and value.__module__ == errors.__name__
    }
    assert family == set(EXAMPLES)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda kind: kind.__name__)
def test_an_exception_comes_back_from_pickling_as_it_was(kind: type[IntercomError], dumps: Callable) -> None:
    error = EXAMPLES[kind]()
    copy = pickle.loads(dumps(error))
    assert type(copy) is kind
    assert str(copy) == str(error)  # not built again from its message ("HTTP Intercom answered HTTP ...")
    assert copy.args == error.args
    assert set(vars(copy)) == set(vars(error))
    for name, value in vars(error).items():
        if name != "report":
            assert getattr(copy, name) == value, name
    if isinstance(error, errors.BatchStoppedError):
        assert copy.report.batch_key == error.report.batch_key and copy.report.stopped == error.report.stopped


def test_a_failed_task_keeps_the_exception_with_its_attributes(prefect_server: None) -> None:
    """Prefect persists a failure's exception; the state read back from the API gives the same error."""

    @task(persist_result=True)
    def fails() -> None:
        raise errors.IntercomRateLimitError(429, reset_at=RESET, remaining=0, error_code="rate_limit_exceeded")

    @flow
    def runs() -> uuid.UUID:
        return fails(return_state=True).state_details.task_run_id

    task_run_id = runs()
    with get_client(sync_client=True) as client:
        state = client.read_task_run(task_run_id).state
    assert state is not None and state.is_failed()
    error = state.result(raise_on_failure=False)  # read from the result storage, unpickled
    assert isinstance(error, errors.IntercomRateLimitError)
    assert (error.status_code, error.reset_at, error.remaining) == (429, RESET, 0)
    assert str(error).count("Intercom answered HTTP") == 1


def test_except_busy_does_not_catch_a_lost_lease() -> None:
    """Busy promises this run sent nothing; a lost lease comes after sends: siblings, not parent and child."""
    lost = EXAMPLES[errors.BatchKeyLostError]()
    with pytest.raises(errors.BatchKeyLostError):
        try:
            raise lost
        except errors.BatchKeyBusyError:
            pytest.fail("`except BatchKeyBusyError` caught a lost lease")
    assert errors.BatchKeyLostError.__bases__ == errors.BatchKeyBusyError.__bases__ == (errors.BatchLeaseError,)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (errors.IntercomRateLimitWaitError, "rate_limit_wait"),
        (errors.BatchKeyLostError, "lease_lost"),
        (errors.LedgerError, "not_attempted"),
        (errors.BatchKeyBusyError, "not_attempted"),
    ],
)
def test_each_error_carries_its_reason_code(kind: type[IntercomError], code: str) -> None:
    from prefect_intercom.batch.run import _code

    assert EXAMPLES[kind]().code == code == _code(EXAMPLES[kind]())
    assert _code(EXAMPLES[errors.IntercomAPIError]()) == "invalid_phone_number"  # Intercom's own code first


def test_causes_walks_an_errors_chain_once_even_through_a_cycle() -> None:
    refused = OSError(111, "Connection refused")
    failed = RuntimeError("cannot open the file")
    failed.__cause__ = refused
    refused.__context__ = failed  # a cycle: each is walked once

    assert list(errors.causes(failed)) == [failed, refused]
    assert list(errors.causes(refused)) == [refused, failed]
