"""A prepared request: validated, addressed and serialized, but without the access token.

`IntercomClient.prepare` builds it; nothing in it is secret, so it may be shown in an
artifact or a log (`display_headers` shows where the token goes). The token joins it only
when it is sent (`IntercomClient`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from prefect_intercom._version import __version__
from prefect_intercom.catalog import Endpoint
from prefect_intercom.errors import IntercomConfigurationError
from prefect_intercom.redaction import REDACTED

USER_AGENT = f"prefect-intercom/{__version__} httpx/{httpx.__version__}"


def check_token(token: SecretStr) -> None:
    """Refuse tokens that cannot travel in an HTTP header (the message never quotes them)."""
    value = token.get_secret_value()
    if not value:
        raise IntercomConfigurationError("the access token is empty")
    if not value.isascii() or any(ord(char) < 33 or ord(char) == 127 for char in value):
        raise IntercomConfigurationError(
            "the access token contains spaces, line breaks, control or non-ASCII characters; "
            "copy it again from Intercom's Developer Hub"
        )


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, ready to send, without the access token.

    Its `repr` shows the method, URL and headers only: the body and its bytes hold the person's
    phone number (the reports show them masked, `prefect_intercom.privacy`).

    Attributes:
        endpoint: The catalogue entry.
        method: HTTP method.
        url: Full URL.
        headers: Every header but `Authorization` (added when sending).
        body: The JSON body as Python data.
        content: The exact bytes that will be sent.
    """

    endpoint: Endpoint = field(repr=False)
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any] = field(repr=False)
    content: bytes = field(repr=False)

    def display_headers(self) -> dict[str, str]:
        """The headers as they go on the wire, with the token shown as `Bearer [REDACTED]`."""
        return {"Authorization": f"Bearer {REDACTED}", **self.headers}
