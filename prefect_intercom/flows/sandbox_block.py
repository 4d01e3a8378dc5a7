"""The commands' `--sandbox`: a local Intercom sandbox, and a credentials block saved for it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from prefect_intercom.credentials import IntercomCredentials

if TYPE_CHECKING:
    from prefect_intercom.sandbox import Sandbox

SANDBOX_BLOCK_NAME = "intercom-sandbox"


def sandbox_block() -> AbstractContextManager[Sandbox]:
    """Start the sandbox and save the block `SANDBOX_BLOCK_NAME` pointing at it, for the `with` block.

    The sandbox accepts a fresh random token, which only the saved block holds.

    Raises:
        ImportError: The `sandbox` extra is not installed; raised before anything starts, and
            its message says what to install.
    """
    from prefect_intercom.sandbox import Sandbox  # the sandbox's server is an extra

    @contextmanager
    def started() -> Iterator[Sandbox]:
        with Sandbox(token=secrets.token_urlsafe(24)) as sandbox:
            IntercomCredentials(access_token=sandbox.token, base_url=sandbox.url).save(
                SANDBOX_BLOCK_NAME, overwrite=True
            )
            print(f"Intercom sandbox on {sandbox.url}; saved the credentials block {SANDBOX_BLOCK_NAME!r} for it.")
            yield sandbox

    return started()
