"""Prefect integration for Intercom's `POST /phone_call_redirects`.

Deflect a waiting phone caller to the Intercom Messenger from a Prefect flow: Intercom texts
the number a Messenger link, and any custom attributes land on the user or lead.
"""

from prefect_intercom._version import __version__
from prefect_intercom.batch import (
    BatchItemResult,
    BatchReport,
    acreate_phone_call_redirects,
    create_phone_call_redirects,
    read_requests_csv,
)
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import (
    BatchKeyBusyError,
    BatchKeyLostError,
    BatchLeaseError,
    BatchStoppedError,
    EarlierAttemptUnknownError,
    IntercomAPIError,
    IntercomAuthenticationError,
    IntercomConfigurationError,
    IntercomError,
    IntercomRateLimitError,
    IntercomRateLimitWaitError,
    IntercomServerError,
    IntercomTransportError,
    IntercomValidationError,
    LedgerAccessDeniedError,
    LedgerDamageError,
    LedgerError,
    LedgerLocationError,
    ValidationIssue,
)
from prefect_intercom.outcomes import Outcome
from prefect_intercom.pacing import Pacer
from prefect_intercom.responses import PhoneCallRedirect
from prefect_intercom.retry import RetryPolicy
from prefect_intercom.tasks import acreate_phone_call_redirect, create_phone_call_redirect
from prefect_intercom.validation import validate_request

__all__ = [
    "BatchItemResult",
    "BatchKeyBusyError",
    "BatchKeyLostError",
    "BatchLeaseError",
    "BatchReport",
    "BatchStoppedError",
    "EarlierAttemptUnknownError",
    "IntercomAPIError",
    "IntercomAuthenticationError",
    "IntercomConfigurationError",
    "IntercomCredentials",
    "IntercomError",
    "IntercomRateLimitError",
    "IntercomRateLimitWaitError",
    "IntercomServerError",
    "IntercomTransportError",
    "IntercomValidationError",
    "LedgerAccessDeniedError",
    "LedgerDamageError",
    "LedgerError",
    "LedgerLocationError",
    "Outcome",
    "Pacer",
    "PhoneCallRedirect",
    "RetryPolicy",
    "ValidationIssue",
    "__version__",
    "acreate_phone_call_redirect",
    "acreate_phone_call_redirects",
    "create_phone_call_redirect",
    "create_phone_call_redirects",
    "read_requests_csv",
    "validate_request",
]
