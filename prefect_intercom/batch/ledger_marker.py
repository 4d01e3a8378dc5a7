"""How many runs a ledger has, and where it is, recorded on the Prefect server beside the storage.

A run whose storage holds fewer runs than the server knows stops before sending (docs/batches.md, `ledger_marker`).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_intercom.errors import LedgerLocationError

MARKER_TAGS = ["prefect-intercom", "batch-ledger"]


def marker_name(folder: str) -> str:
    """The Variable's name for a ledger folder (a hash: no batch key on the server)."""
    return f"intercom-ledger-{hashlib.sha256(folder.encode()).hexdigest()[:24]}"


async def check_marker(folder: str, runs_in_storage: int, where: str) -> bool:
    """Refuse when the server knows of more runs of this ledger than the storage holds.

    Returns:
        Whether the server has a marker for this ledger (for `record_marker`).

    Raises:
        LedgerLocationError: The ledger's earlier runs are somewhere this run does not read.
    """
    async with get_client() as client:
        variable = await client.read_variable_by_name(marker_name(folder))
    value: Any = variable.value if variable is not None else None
    known = value.get("runs") if isinstance(value, dict) else None
    if isinstance(known, int) and known > runs_in_storage:
        elsewhere = value.get("where") or "another machine or container"
        raise LedgerLocationError(
            f"This batch key's ledger has {known} earlier run(s) on record at the Prefect server, but the ledger "
            f"storage this run reads ({where}) holds {runs_in_storage}: the ledger is elsewhere (last kept at "
            f"{elsewhere}), so this run cannot tell who was texted and sent nothing. Run it where that ledger is, "
            "or keep the campaign's ledger in shared storage (ledger_storage=, deflect-calls --ledger-storage); "
            "to text everyone again on purpose, use a new batch key."
        )
    return variable is not None


async def record_marker(folder: str, runs: int, where: str, *, local: bool, exists: bool) -> None:
    """Record that the ledger now has `runs` runs, kept at `where` (on this host, when `local`).

    Args:
        folder: The ledger's folder.
        runs: Its runs, this one included.
        where: Where it is kept.
        local: Whether that is this machine's disk.
        exists: Whether the marker exists, as `check_marker` just read it.
    """
    name = marker_name(folder)
    value = {"runs": runs, "where": f"{socket.gethostname()}:{where}" if local else where}
    async with get_client() as client:
        if not exists:
            with contextlib.suppress(ObjectAlreadyExists):  # another run of the key (lock=False) was first
                await client.create_variable(VariableCreate(name=name, value=value, tags=MARKER_TAGS))
                return
        try:
            await client.update_variable(VariableUpdate(name=name, value=value, tags=MARKER_TAGS))
        except ObjectNotFound:  # removed since it was read
            await client.create_variable(VariableCreate(name=name, value=value, tags=MARKER_TAGS))
