"""Where requests may go: Intercom's regional hosts, and the guard on custom base URLs.

The access token is sent only to one of Intercom's hosts over https, to a loopback address
(the sandbox, a local proxy), or to another https host the user explicitly opted in to.
"""

from __future__ import annotations

import ipaddress

import httpx

from prefect_intercom.errors import IntercomConfigurationError

REGION_HOSTS: dict[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
INTERCOM_HOSTNAMES = frozenset(httpx.URL(url).host for url in REGION_HOSTS.values())


def region_base_url(region: str) -> str:
    """The API host of an Intercom region (`us`, `eu` or `au`)."""
    try:
        return REGION_HOSTS[region]
    except KeyError:
        raise IntercomConfigurationError(
            f"unknown region {region!r}; expected one of: {', '.join(REGION_HOSTS)}"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (`localhost`, 127.0.0.0/8 or ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, allow_custom_host: bool = False) -> str:
    """Accept a base URL the access token may be sent to, or refuse it.

    Args:
        url: The base URL, e.g. `http://127.0.0.1:8080` or `https://api.eu.intercom.io`.
        allow_custom_host: The user's explicit opt-in to a host that is neither Intercom's
            nor loopback (still https only).

    Returns:
        The URL without a trailing slash.

    Raises:
        IntercomConfigurationError: The URL is malformed, or the token must not go there.
    """
    text = url.strip()
    try:
        parsed = httpx.URL(text)
        hostname = parsed.host  # decoded lazily: idna may refuse it here
    except (httpx.InvalidURL, ValueError, TypeError) as error:  # ValueError: idna's errors on odd host names
        raise IntercomConfigurationError(f"base_url {url!r} is not a valid URL: {error}") from None
    if any(ord(char) < 32 for char in text):
        raise IntercomConfigurationError("base_url must not contain control characters")
    if parsed.scheme not in ("http", "https") or not hostname:
        raise IntercomConfigurationError(
            f"base_url {url!r} must be an http(s) URL with a host, e.g. https://api.intercom.io"
        )
    # An empty query or fragment (`...io?`, `...io#`) parses as none, yet would swallow the
    # endpoint path appended to the base URL: refuse the marks themselves.
    if parsed.userinfo or parsed.query or parsed.fragment or any(mark in text for mark in "?#@"):
        raise IntercomConfigurationError(
            "base_url must not carry credentials, a query or a fragment; put the token in access_token"
        )
    host = hostname.lower()
    if parsed.scheme != "https" and not is_loopback(host):
        raise IntercomConfigurationError(
            f"base_url {url!r} uses plain http to a host that is not loopback; the access token "
            "would travel unencrypted. Use https."
        )
    if not (is_loopback(host) or host in INTERCOM_HOSTNAMES or allow_custom_host):
        raise IntercomConfigurationError(
            f"base_url host {host!r} is neither an Intercom host ({', '.join(sorted(INTERCOM_HOSTNAMES))}) "
            "nor loopback. If you really mean to send your access token there (e.g. a company proxy), "
            "set allow_custom_base_url=True."
        )
    return text.rstrip("/")
