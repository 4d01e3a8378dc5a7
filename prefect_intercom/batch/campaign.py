"""The default batch key of a campaign: the same input sent to the same Intercom app is the same batch.

What goes into the key and what is left out: docs/batches.md, `campaign`.
"""

from __future__ import annotations

import hashlib

CAMPAIGN_PREFIX = "campaign-"
KEY_LETTERS = 20
# The hash's hex digits written as the letters a-p: a key never holds a run of digits, which the
# batch key check (`engine.check_batch_key`) would take for a phone number and refuse.
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_VERSION = b"prefect-intercom campaign v1"


def campaign_key(content_sha256: str, api_url: str, nonce: str | None = None) -> str:
    """The batch key of sending a file's content to an Intercom app.

    Args:
        content_sha256: The SHA-256 of the input file's bytes (hex).
        api_url: The Intercom app's API root (`IntercomCredentials.api_url`); a trailing slash
            does not matter.
        nonce: Anything that makes a fresh campaign of the same content (`--send-again`);
            `None` for the default key.

    Returns:
        `campaign-` and 20 letters (a-p: a hash with no digit in it).

    Raises:
        ValueError: `content_sha256` is not a SHA-256 in hex, or `api_url` is empty.

    Example:
        ```python
        campaign_key(hashlib.sha256(Path("callers.csv").read_bytes()).hexdigest(), "https://api.intercom.io")
        ```
    """
    digest = content_sha256.strip().lower()
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        raise ValueError("content_sha256 must be a SHA-256 in hex (64 digits)")
    host = api_url.strip().rstrip("/")
    if not host:
        raise ValueError("api_url must not be empty")
    parts = [_VERSION, digest.encode(), host.encode()]
    if nonce is not None:
        parts.append(b"again|" + nonce.encode())
    return CAMPAIGN_PREFIX + hashlib.sha256(b"\n".join(parts)).hexdigest()[:KEY_LETTERS].translate(_LETTERS)
