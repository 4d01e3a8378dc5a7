"""The `IntercomCredentials` block: access token, API version, region and connection settings."""

from __future__ import annotations

from typing import Literal, Optional

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.client import DEFAULT_TIMEOUT, IntercomClient
from prefect_intercom.hosts import REGION_HOSTS, check_base_url, region_base_url

VERSION_HEADER = "Intercom-Version"
# One source of truth: the header schema generated from the docs page and Intercom's OpenAPI
# descriptions (`prefect_intercom.schemagen`), in its order: version numbers oldest first, then
# "Unstable" and its new name "Preview".
INTERCOM_VERSIONS: tuple[str, ...] = tuple(get_endpoint(PHONE_CALL_REDIRECTS).header_enum(VERSION_HEADER))
DEFAULT_INTERCOM_VERSION: str = get_endpoint(PHONE_CALL_REDIRECTS).header_default(VERSION_HEADER) or "2.12"
IntercomVersion = Literal[INTERCOM_VERSIONS]  # type: ignore[valid-type]
RegionName = Literal[tuple(REGION_HOSTS)]  # type: ignore[valid-type]


class IntercomCredentials(Block):
    """Credentials and connection settings for Intercom's REST API.

    The access token is stored as a secret: it is never shown in the UI, in logs, in a repr
    or in an error, and it is only ever sent to Intercom's hosts over https or to a loopback
    address (unless you opt in to another host with `allow_custom_base_url`).

    Attributes:
        access_token: The Intercom access token (Developer Hub -> your app -> Authentication).
        intercom_version: The `Intercom-Version` header sent with every request.
        region: Where your Intercom workspace is hosted: `us`, `eu` or `au`.
        base_url: Optional API root overriding the region, e.g. the local sandbox.
        allow_custom_base_url: Opt-in to a `base_url` that is neither Intercom's nor loopback.
        timeout: Seconds to wait for connecting, sending and reading.

    Example:
        Save once, then load in any flow:
        ```python
        from prefect_intercom import IntercomCredentials

        IntercomCredentials(access_token="dG9rOj...", region="eu").save("intercom")

        credentials = IntercomCredentials.load("intercom")
        ```
    """

    _block_type_name = "Intercom Credentials"
    _block_type_slug = "intercom-credentials"
    # Intercom's brand mark: the avatar of Intercom's GitHub organisation (which publishes the
    # OpenAPI description the schemas are checked against): square, 256 px, a stable address.
    _logo_url = "https://github.com/intercom.png?size=256"
    _documentation_url = (
        "https://developers.intercom.com/docs/references/rest-api/api.intercom.io/switch/createphoneswitch"
    )
    _description = (
        "Access token, API version and region for Intercom's REST API, used by the prefect-intercom "
        "tasks to deflect phone calls to the Intercom Messenger."
    )
    _code_example = """```python
from prefect_intercom import IntercomCredentials

intercom_credentials = IntercomCredentials.load("BLOCK_NAME")
```"""

    model_config = ConfigDict(hide_input_in_errors=True)

    access_token: SecretStr = Field(
        default=...,
        title="Access Token",
        description="Intercom access token of your app (Developer Hub > your app > Authentication). "
        "Stored encrypted; never logged.",
    )
    intercom_version: IntercomVersion = Field(  # type: ignore[valid-type]
        default=DEFAULT_INTERCOM_VERSION,
        title="Intercom-Version",
        description="API version sent in the Intercom-Version header: any version Intercom's documentation "
        "page or its OpenAPI description lists ('Preview' is the new name of 'Unstable').",
    )
    region: RegionName = Field(  # type: ignore[valid-type]
        default="us",
        title="Region",
        description="Where your Intercom workspace is hosted: us (api.intercom.io), eu "
        "(api.eu.intercom.io) or au (api.au.intercom.io).",
    )
    allow_custom_base_url: bool = Field(
        default=False,
        title="Allow custom base URL",
        description="Send the access token to a base URL that is neither an Intercom host nor "
        "loopback (https only), such as a company proxy. Leave off unless you need it.",
    )
    base_url: Optional[str] = Field(  # noqa: UP045 - Prefect's UI renders Optional[...] best
        default=None,
        title="Base URL",
        description="Optional API root that overrides the region, e.g. http://127.0.0.1:8765 for the "
        "local sandbox. Allowed: Intercom's hosts over https and loopback addresses; any other host "
        "only with 'Allow custom base URL'.",
    )
    timeout: float = Field(
        default=DEFAULT_TIMEOUT,
        gt=0,
        le=600,
        title="Timeout (seconds)",
        description="Seconds to wait for connecting, sending and reading each answer.",
    )

    @field_validator("access_token", mode="before")
    @classmethod
    def _strip_token(cls, value: object) -> object:
        # Surrounding white space (a copy-paste accident) is dropped. Other checks of the
        # token's characters happen in the client, whose errors never quote the token.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not (raw := raw.strip()):
            raise ValueError("access_token is empty")
        return raw

    @field_validator("base_url")
    @classmethod
    def _base_url_is_allowed(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator (not a model validator) so that a refusal's error data holds only
        # the URL, never the rest of the input (the token). `allow_custom_base_url` is declared
        # first so that it is already validated here.
        # The refusal, an `IntercomConfigurationError`, is a `ValueError`: pydantic reports its message.
        if value is not None:
            check_base_url(value, allow_custom_host=bool(info.data.get("allow_custom_base_url", False)))
        return value

    @property
    def api_url(self) -> str:
        """The API root requests go to: `base_url` if set, else the region's host."""
        return (self.base_url or region_base_url(self.region)).rstrip("/")

    def get_client(self, **overrides: object) -> IntercomClient:
        """An `IntercomClient` using these credentials.

        Args:
            **overrides: Any `IntercomClient` argument to change for this client only, passed
                through as given, e.g. `intercom_version="2.11"`, `transport=...` (the sync
                client's) or `async_transport=...` (the async client's). The wrong kind of
                transport, or an argument `IntercomClient` does not take, raises `TypeError`.

        Returns:
            A client; use it as a context manager to close its connections.
        """
        options: dict[str, object] = {
            "base_url": self.api_url,
            "intercom_version": self.intercom_version,
            "timeout": self.timeout,
            "allow_custom_base_url": self.allow_custom_base_url,
            **overrides,
        }
        return IntercomClient(self.access_token, **options)  # type: ignore[arg-type]
