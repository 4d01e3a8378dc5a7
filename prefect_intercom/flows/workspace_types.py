"""The workspace's custom attribute types for a deflect-calls run: read once, before the file is sent or checked."""

from __future__ import annotations

import logging
from typing import Any

from prefect_intercom.batch.attribute_types import fetch_workspace_types
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.flows.test_request import load_credentials
from prefect_intercom.retry import DEFAULT_RETRY_POLICY


def workspace_types(
    credentials: IntercomCredentials, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> dict[str, str] | None:
    """The workspace's contact custom attribute types (one `GET /data_attributes`), or `None` with a WARNING.

    A read is safe to repeat: a 429 or a refused connection is retried as every send is (`DEFAULT_RETRY_POLICY`).
    """
    with credentials.get_client(retry=DEFAULT_RETRY_POLICY) as client:
        return fetch_workspace_types(client, logger)


def dry_run_types(block_name: str, logger: logging.Logger | logging.LoggerAdapter[Any]) -> dict[str, str] | None:
    """`workspace_types` for a dry run, which needs no block: without one, a WARNING and `None`.

    Then the dry run checks only the types the CSV header declares (`vip:boolean`).
    """
    try:
        credentials = load_credentials(block_name)
    except Exception:
        logger.warning(
            "Dry run without the credentials block %r: the workspace's custom attribute types were not read, "
            "only the types the CSV header declares (name:type) are checked",
            block_name,
        )
        return None
    return workspace_types(credentials, logger)
