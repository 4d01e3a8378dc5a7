"""The ledger key: a secret on the Prefect server that makes the ledger's item digests irreversible.

Why it lives on the server, not in the ledger storage: docs/batches.md, `ledger_secret`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable
from typing import Any

SECRET_BLOCK_NAME = "prefect-intercom-ledger-key"  # noqa: S105 - a block's name
_CHECK = b"prefect-intercom ledger key check"


async def read_ledger_key(name: str = SECRET_BLOCK_NAME) -> bytes | None:
    """The ledger key from the `Secret` block `name`, or `None` while there is no such block.

    A read only (it writes nothing on the Prefect server), so it may go alongside other requests.
    """
    from prefect.blocks.system import Secret

    try:
        secret = await Secret.aload(name)
    except ValueError:  # no such block yet (Prefect's words for a missing block document)
        return None
    return _key_of(secret)


async def load_ledger_key(name: str = SECRET_BLOCK_NAME, *, read: Awaitable[bytes | None] | None = None) -> bytes:
    """The ledger key from the `Secret` block `name`, created with 32 random bytes on first use.

    Args:
        name: The block's name.
        read: A `read_ledger_key(name)` already under way (the engine starts it beside the lease);
            default: read now.
    """
    key = await (read if read is not None else read_ledger_key(name))
    return key if key is not None else await create_ledger_key(name)


async def create_ledger_key(name: str = SECRET_BLOCK_NAME) -> bytes:
    """Create the `Secret` block `name` with 32 random bytes (it was found missing); its key.

    Two runs creating it at once: the second save fails on the unique name and reads the first's.
    The run whose save succeeded uses the value it saved, without reading it back: the name is
    unique, so no other value can be stored under it.
    """
    from prefect.blocks.system import Secret

    secret = Secret(value=secrets.token_hex(32))
    try:
        await secret.asave(name, overwrite=False)
    except ValueError:  # created by another run in the meantime: its value is the key
        secret = await Secret.aload(name)
    return _key_of(secret)


def _key_of(secret: Any) -> bytes:
    """The ledger key a `Secret` block holds."""
    return hashlib.sha256(str(secret.get()).encode()).digest()


def key_check(ledger_key: bytes) -> str:
    """A value stored with each run that tells whether a later run holds the same ledger key."""
    return hmac.new(ledger_key, _CHECK, hashlib.sha256).hexdigest()[:16]


def digest_key(ledger_key: bytes, scope: str, batch_key: str) -> bytes:
    """The key of the item digests of one batch key in one Intercom app's scope."""
    return hmac.new(ledger_key, f"digests|{scope}|{batch_key}".encode(), hashlib.sha256).digest()[:32]


def token_tag(ledger_key: bytes, token: str) -> str:
    """Which access token wrote a run, without revealing it (a keyed hash)."""
    return hmac.new(ledger_key, f"token|{token}".encode(), hashlib.sha256).hexdigest()[:16]
