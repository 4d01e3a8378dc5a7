"""Where the ledger is, said before the first send: can a re-run elsewhere read it?

Local disk on a pool whose runs share no disk is refused unless chosen (docs/batches.md, `ledger_location`).
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.results import _aget_default_result_storage, _DefaultResultStorageSource, get_result_store

from prefect_intercom.errors import LedgerLocationError

SINGLE_HOST_POOL_TYPES = frozenset({"process"})
"""Work pool types whose runs share their host's disk (every run of a worker on one machine)."""

SHARED_STORAGE_HINT = (
    "give it shared storage: pass ledger_storage= (an S3Bucket, GcsBucket or AzureBlobStorageContainer block; "
    "deflect-calls: --ledger-storage s3-bucket/NAME), or set PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=s3-bucket/NAME"
)


async def storage_was_chosen(ledger_storage: object | None) -> bool:
    """Whether the ledger's storage was chosen on purpose (an argument, the flow's, a setting, the server's)."""
    if ledger_storage is not None or get_result_store().result_storage is not None:
        return True
    return (await _aget_default_result_storage()).source is not _DefaultResultStorageSource.LOCAL_STORAGE_PATH


async def work_pool_type() -> str | None:
    """The type of the work pool running this flow run (`None`: not run by a worker)."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    if flow_run is None or not flow_run.work_pool_name:
        return None
    async with get_client() as client:
        return (await client.read_work_pool(flow_run.work_pool_name)).type


async def ledger_location_note(*, local: bool, where: str, chosen: bool) -> str | None:
    """The sentence to say once about where the ledger is (`None`: shared storage, nothing to say).

    Raises:
        LedgerLocationError: Local disk, on a pool whose runs share no disk, not chosen on purpose.
    """
    if not local:
        return None
    pool_type = await work_pool_type()
    if pool_type is not None and pool_type not in SINGLE_HOST_POOL_TYPES and not chosen:
        raise LedgerLocationError(
            f"The batch ledger would be on this run's local disk ({where}), on a {pool_type!r} work pool whose runs "
            "share no disk: a re-run after a crash would not see what this run sent and could text people twice, so "
            f"nothing was sent. To resume safely, {SHARED_STORAGE_HINT}; to keep local disk on purpose, pass "
            "ledger_storage=LocalFileSystem(basepath=...) explicitly."
        )
    runner = f"a {pool_type!r} work pool" if pool_type else "this machine"
    return (
        f"The batch ledger is on local disk ({where}) on {runner}: a re-run on this machine resumes without texting "
        f"anyone twice, but a re-run on another machine or worker would not see it. For campaigns that may move, "
        f"{SHARED_STORAGE_HINT}."
    )
