"""Who holds a batch key's lease: a record on the Prefect server, for taking over at once.

The record is a Prefect Variable named like the lease, holding only ids, never the batch key.
When and why a re-run takes over, and why the record only speeds recovery up: docs/batch-lease.md.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import VariableCreate
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import TypeAdapter, ValidationError

GONE_STATES = frozenset({StateType.CRASHED, StateType.FAILED, StateType.CANCELLED, StateType.COMPLETED})
RECORD_TAGS = ["prefect-intercom", "batch-lease"]


@dataclass(frozen=True)
class Holder:
    """One attempt of a flow run holding (or about to hold) a lease.

    Attributes:
        limit_id: The id of the lease's global concurrency limit (`None` before it exists).
        flow_run_id: The holder's flow run.
        run_count: Its attempt: the flow run's run count when it took the lease.
        task_run_id: The task run that took the lease, if any.
    """

    limit_id: uuid.UUID | None
    flow_run_id: uuid.UUID
    run_count: int
    task_run_id: uuid.UUID | None = None

    def value(self) -> dict[str, Any]:
        """The record's value: ids and a count, nothing personal."""
        return _RECORD.dump_python(self, mode="json")

    @classmethod
    def from_value(cls, value: Any) -> Holder | None:
        """Read a record's value back; `None` when it is not one (edited by hand, another format)."""
        try:
            return _RECORD.validate_python(value)
        except ValidationError:
            return None


_RECORD = TypeAdapter(Holder)


async def this_attempt(client: PrefectClient) -> Holder | None:
    """The flow run attempt this code runs in, as the server counts it; `None` outside a flow run.

    The run count is read from the server: the flow run in the context was read before this
    attempt moved it to Running, so its count can be one behind.

    Args:
        client: A Prefect client.

    Returns:
        The attempt (without a limit id), or `None` outside a flow run.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    flow_run = await client.read_flow_run(context.flow_run.id)
    task_context = TaskRunContext.get()
    return Holder(None, flow_run.id, flow_run.run_count, task_context.task_run.id if task_context else None)


async def write_record(client: PrefectClient, name: str, holder: Holder) -> uuid.UUID:
    """Record the new holder of lease `name`; a leftover record (of an older limit id) is replaced.

    Only the run that has just created the limit writes its record, so a leftover names another
    limit id: it is deleted by its own id (never a newer record written meanwhile), then the
    record is created again, once.

    Args:
        client: A Prefect client.
        name: The lease's name (also the record's).
        holder: The holder, with its limit id.

    Returns:
        The record's id (to delete it by id on release).

    Raises:
        ObjectAlreadyExists: A record was written again in between (the run keeps its lease
            without a record: a crash then waits for the lease to expire).
    """
    create = VariableCreate(name=name, value=holder.value(), tags=RECORD_TAGS)
    try:
        return (await client.create_variable(create)).id
    except ObjectAlreadyExists:
        leftover = await client.read_variable_by_name(name)
        if leftover is not None:
            await delete_record(client, leftover.id)
        return (await client.create_variable(create)).id


async def delete_record(client: PrefectClient, record_id: uuid.UUID) -> None:
    """Delete a record by its id; one already gone is fine.

    Args:
        client: A Prefect client.
        record_id: The record's id.
    """
    try:
        await client.request("DELETE", "/variables/{id}", path_params={"id": str(record_id)})
    except httpx.HTTPStatusError as error:
        if error.response.status_code != HTTPStatus.NOT_FOUND:
            raise


async def gone(client: PrefectClient, name: str, limit_id: uuid.UUID, me: Holder | None) -> str | None:
    """Why Prefect knows the holder of lease `name`'s live row `limit_id` no longer runs, or `None`.

    Args:
        client: A Prefect client.
        name: The lease's name (also its record's).
        limit_id: The id of the lease's row now.
        me: This run's attempt, when it runs in a flow run.

    Returns:
        A reason (for the log), or `None`: the holder may be alive (or the server could not tell), wait
        for its lease to expire.
    """
    with contextlib.suppress(httpx.HTTPError, OSError):  # unsure: wait for the lease to expire
        variable = await client.read_variable_by_name(name)
        holder = Holder.from_value(variable.value) if variable is not None else None
        if holder is None or holder.limit_id != limit_id:
            return None  # no record, or one of an older row: wait for the lease to expire
        if me is not None and holder.flow_run_id == me.flow_run_id:
            if holder.run_count < me.run_count:
                return f"it is an earlier attempt (run {holder.run_count}) of this flow run (run {me.run_count})"
            return None  # this very attempt holds it (or a later one does)
        with contextlib.suppress(ObjectNotFound):
            flow_run = await client.read_flow_run(holder.flow_run_id)
            if flow_run.state_type in GONE_STATES:
                return f"its flow run {holder.flow_run_id} is {flow_run.state_name or flow_run.state_type.value}"
    return None
