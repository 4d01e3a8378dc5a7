"""The batch as Prefect tasks: the credentials block, the default batch key, progress and table artifacts."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import anyio
from prefect import get_run_logger, task
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import AsyncClientContext, FlowRunContext, TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.utilities.asyncutils import run_coro_as_sync

from prefect_intercom.batch.concurrency import DEFAULT_MAX_CONCURRENCY
from prefect_intercom.batch.engine import asend_batch, check_batch_key
from prefect_intercom.batch.report import DEFAULT_TABLE_ROWS, BatchReport
from prefect_intercom.batch.run import DEFAULT_STOP_AFTER_UNKNOWN, ItemKeyFunction
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import BatchStoppedError, IntercomConfigurationError
from prefect_intercom.events import emit_batch_finished
from prefect_intercom.http_clients import preload_async_transport
from prefect_intercom.idempotency import OCCURRENCES
from prefect_intercom.pacing import Pacer
from prefect_intercom.retry import DEFAULT_RETRY_POLICY, RetryPolicy

PROGRESS_INTERVAL = 2.0
P = ParamSpec("P")
R = TypeVar("R")

_BATCH_TASK_OPTIONS: dict[str, Any] = {
    "name": "create-phone-call-redirects",
    "cache_policy": NO_CACHE,
    # Prefect's retries would replay a consumed iterator; re-runs go through the ledger.
    "retries": 0,
    "persist_result": False,
}

# Default-keyed batch calls are numbered per flow run attempt by `idempotency.OCCURRENCES` (the single
# task's counter), as this one call.
_DEFAULT_KEYED_CALL = "prefect-intercom/default-keyed batch"
# The flow run attempts running a default-keyed batch now (one at a time each).
_RUNNING_DEFAULT_KEYED: set[tuple[UUID, int] | None] = set()
# Batch bodies running now in this process: their asyncio task -> (its batch key, set when over).
_RUNNING_BATCHES: dict[asyncio.Task[Any], tuple[str | None, threading.Event]] = {}


def stop_running_batches(batch_key: str | None = None, timeout: float = 60.0) -> bool:
    """Cancel the batches running in this process and wait until each has wound down.

    For interrupts (Ctrl-C, SIGTERM): Prefect runs a sync task's coroutine on its own event
    loop thread, which goes on while the main thread handles the signal. Cancelled here, a
    batch ends the orderly way: the requests in flight get their answers recorded, the ledger
    is closed and the batch key's lease released, so the same run started again at once resumes.

    Args:
        batch_key: Only the batches sent with this key (default: every batch).
        timeout: Seconds to wait for them.

    Returns:
        Whether each was over in time (`True` when none was running).
    """
    running = [(body, done) for body, (key, done) in list(_RUNNING_BATCHES.items()) if batch_key in (None, key)]
    for body, _ in running:
        if not body.get_loop().is_closed():
            body.get_loop().call_soon_threadsafe(_cancel_once, body)
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    deadline = time.monotonic() + timeout
    return all(
        done.wait(max(0.0, deadline - time.monotonic()))
        for body, done in running
        if body.get_loop() is not current  # never block the loop the batch needs to finish on
    )


def _cancel_once(body: asyncio.Task[Any]) -> None:
    """Cancel a batch body unless it was already: a second cancellation would cut its cleanup short."""
    if not body.done() and not body.cancelling():
        body.cancel()


async def _arun_batch_task(**options: Any) -> BatchReport:
    """Run the batch in an asyncio task of its own, which a cancellation reaches once.

    Prefect cancels a sync task's coroutine (on Ctrl-C) through an anyio cancel scope, which
    cancels again at every `await`, also those of the batch's cleanup (answers in flight, the
    ledger's last record, the lease). The batch body is cancelled once instead and awaited
    to its end, shielded.
    """
    body = asyncio.ensure_future(_abatch(**options))
    done = threading.Event()
    _RUNNING_BATCHES[body] = (options.get("batch_key"), done)

    def over(_: object) -> None:
        _RUNNING_BATCHES.pop(body, None)
        done.set()

    body.add_done_callback(over)
    try:
        return await asyncio.shield(body)
    except asyncio.CancelledError:
        _cancel_once(body)
        with anyio.CancelScope(shield=True):
            await asyncio.wait({body})
        raise


def default_batch_key() -> str:
    """The batch key of the current task run: stable across retries of its flow run.

    The flow run id and the call's position among the batches the flow run attempt has
    started (`flow-run-<id>/batch-0`, `.../batch-1`...), so retrying a failed flow run (same
    flow run id, same calls in the same order) finds what the failed attempt sent; a subflow's
    batches count in the subflow, not in its parent. Batches started concurrently in one flow
    run (`.submit()`, `asyncio.gather`) would number themselves in whatever order they start,
    which a retry need not repeat: the task refuses a second default-keyed batch while one is
    running, so pass `batch_key` to each. Outside a flow run: the task run id (every run is
    then a new batch).
    """
    attempt = _attempt()
    if attempt is None:
        task_context = TaskRunContext.get()
        if task_context is None:
            raise ValueError("pass batch_key= when sending a batch outside a Prefect run")
        return f"task-run-{task_context.task_run.id}"
    call = OCCURRENCES.number(*attempt, _DEFAULT_KEYED_CALL)  # a parent's count survives its subflows
    return f"flow-run-{attempt[0]}/batch-{call - 1}"


def _attempt() -> tuple[UUID, int] | None:
    """(flow run id, attempt number) of the current flow run, if any: the attempt is Prefect's run count."""
    flow_context = FlowRunContext.get()
    if flow_context is None or flow_context.flow_run is None:
        return None
    return flow_context.flow_run.id, int(flow_context.flow_run.run_count or 0)


@contextmanager
def _default_keyed(batch_key: str | None) -> Iterator[str]:
    """The batch key to use; a default key is refused while another default-keyed batch of the flow run runs."""
    if batch_key:
        yield batch_key
        return
    attempt = _attempt()
    if attempt in _RUNNING_DEFAULT_KEYED:
        raise IntercomConfigurationError(
            "another batch of this flow run is running with a default batch key; batches started together "
            "(.submit(), asyncio.gather) need batch_key= each, so that a flow retry finds what each one sent"
        )
    key = default_batch_key()
    if attempt is not None:
        _RUNNING_DEFAULT_KEYED.add(attempt)
    try:
        yield key
    finally:
        _RUNNING_DEFAULT_KEYED.discard(attempt)


async def _abatch(
    credentials: IntercomCredentials,
    *,
    batch_key: str | None,
    retry: RetryPolicy | None,
    pace: bool,
    global_rate_limit: str | None,
    artifact_key: str,
    **options: Any,
) -> BatchReport:
    """The task's body: the rest of its arguments (`options`, `requests` too) go to `asend_batch` as they are."""
    concurrency, max_concurrency = options["concurrency"], options["max_concurrency"]
    with _default_keyed(batch_key) as key:
        check_batch_key(key)  # before the key is logged: a phone in it is refused, never shown
        # One Prefect client for the whole batch: every `get_client()` on this loop (lease, ledger, artifacts)
        # takes it, instead of making its own (about 50 ms of CPU each, for its TLS context).
        async with AsyncClientContext.get_or_create() as client_context:
            prefect_client = client_context.client
            # aiohttp's import off the event loop, while it waits on the lease and ledger (started after the
            # Prefect client is made: both are CPU, and the client is needed first)
            preload_async_transport()
            logger = get_run_logger()
            artifact_id: Any = None

            async def show_progress(report: BatchReport, final: bool = False) -> None:
                """Create the progress artifact, then update it (with one client: a new one each time cost 12% CPU).

                The engine's last call (sending is over: `elapsed` is set) is left out: the task's own final
                update, with the total known, follows at once.
                """
                nonlocal artifact_id
                if report.elapsed and not final:
                    return
                expected, text = report.expected_total, report.progress_text()
                percent = min(100.0, 100.0 * report.total / expected) if expected else 0.0
                if artifact_id is None:
                    artifact_id = await acreate_progress_artifact(percent, f"{artifact_key}-progress", text)
                else:
                    await aupdate_progress_artifact(artifact_id, percent, text, client=prefect_client)

            pacer = Pacer(headers=pace, global_rate_limit=global_rate_limit) if pace or global_rate_limit else None
            logger.info(
                "Sending batch %r: concurrency %s, pacing %s, retry %s",
                key,
                concurrency or f"adaptive up to {max_concurrency}",
                "off" if pacer is None else f"headers{' + ' + repr(global_rate_limit) if global_rate_limit else ''}",
                retry,
            )
            connections = concurrency or max_concurrency
            async with credentials.get_client(retry=retry, pacer=pacer, max_connections=connections) as client:
                report = await asend_batch(
                    client, batch_key=key, on_progress=show_progress, progress_interval=PROGRESS_INTERVAL, **options
                )
            if report.expected_total is None:
                report.expected_total = report.total
            # One write after the other: two at once on a SQLite Prefect server can wait seconds for its lock
            # (measured: artifacts written while the lease was released held the call 2 s).
            await show_progress(report, final=True)
            await acreate_table_artifact(
                table=report.table_rows(),
                key=f"{artifact_key}-report",
                description=report.summary_markdown(report.max_table_rows),
            )
            logger.info("Batch %r (run %d) done: %s", key, report.run, report.progress_text())
            emit_batch_finished(report)
            if report.stopped:
                raise BatchStoppedError(report)
            return report


@task(**_BATCH_TASK_OPTIONS)
async def acreate_phone_call_redirects(
    credentials: IntercomCredentials,
    requests: Iterable[Any] | AsyncIterable[Any],
    batch_key: str | None = None,
    concurrency: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    retry: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    pace: bool = True,
    global_rate_limit: str | None = None,
    resend_unknown: bool = False,
    item_key: ItemKeyFunction | None = None,
    expected_total: int | None = None,
    ledger_storage: WritableFileSystem | None = None,
    artifact_key: str = "intercom-batch",
    max_table_rows: int = DEFAULT_TABLE_ROWS,
    first_row: int | Callable[[int], int] | None = None,
    stop_after_unknown: int | None = DEFAULT_STOP_AFTER_UNKNOWN,
    results_path: str | None = None,
    lock_wait: float = 0.0,
) -> BatchReport:
    """Deflect many callers to the Intercom Messenger in one task run; each item ends in one outcome.

    `create_phone_call_redirects` runs it to its end in a sync context and is awaitable in an async
    one; `acreate_phone_call_redirects` is the async task itself.

    Items are streamed from `requests`, validated (invalid ones are `rejected`, never sent),
    and sent through the same pipeline as `create_phone_call_redirect`: the same retry policy
    (by default only 429s and connect failures are retried) and pacing from Intercom's
    rate-limit headers, optionally shared with other processes through a Prefect global rate
    limit. By default the number of requests in flight adapts to Intercom's rate and the
    measured latency. One run of a batch key at a time: the key's lease is held for the whole
    run. Every attempt is written to a ledger in the run's result storage before it goes out,
    so retrying the flow run, or re-running with the same `batch_key`, never resends what was
    sent, and a crash leaves at most the requests in flight `unknown` (see
    `prefect_intercom.batch.ledger`). A progress artifact follows the run; a table artifact
    (summary and up to `max_table_rows` rows, problems first) ends it.

    Args:
        credentials: The `IntercomCredentials` block to use.
        requests: Request bodies, any iterable (e.g. `read_requests_csv("callers.csv")`):
            `{"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing"}}`.
        batch_key: Identifies the batch across runs (default: this task call within its
            flow run, stable across retries of the flow run). It is shown in logs, events and
            artifacts: a key that looks like it holds a phone number is refused.
        concurrency: Requests in flight; default: adapted to Intercom's rate x the measured
            latency, up to `max_concurrency`.
        max_concurrency: The most requests (and connections) in flight when adapting.
        retry: The retry policy (default: 429s and connect failures, bounded, `max_wait`
            120 s: a rate-limit window further away stops the batch instead of sleeping);
            pass `RetryPolicy(retry_unknown=True)` to also repeat what may have texted.
        pace: Slow down from Intercom's rate-limit headers before a 429.
        global_rate_limit: Name of a Prefect global concurrency limit with slot decay shared
            by every sender of the same Intercom app (`prefect gcl create ...`).
        resend_unknown: Also send items whose outcome was unknown in an earlier run.
        item_key: The item's identity, from its body (default: the phone number; an item
            whose key was already seen in the batch is `skipped`).
        expected_total: The number of items, if known (for the progress artifact).
        ledger_storage: Where the ledger lives (default: the run's result storage).
        artifact_key: Prefix of the artifacts' keys (`-progress`, `-report`).
        max_table_rows: Rows in the table artifact at most.
        first_row: What people call item 0 in the artifacts and messages (e.g. `2`: CSV rows as a
            spreadsheet numbers them, the header is row 1), or each item's row number
            (`scan_csv(path).row_numbers`, blank lines counted); default: `item 0`, `item 1`...
        stop_after_unknown: Stop after this many unknown outcomes in a row (`None`: never).
        results_path: A file for every item's result (JSON Lines); default: a temporary
            file that `report.items()` reads, removed with the report.
        lock_wait: Seconds to wait while another run holds the batch key (0: refuse at once).

    Returns:
        The `BatchReport`: counts per outcome; `report.items()` reads every item's result.

    Raises:
        BatchStoppedError: The batch stopped early (401/403/404, a rate-limit window beyond
            the retry budget, a streak of unknown outcomes); `.report` holds the report, and a
            re-run with the same batch key sends what was not attempted.
        BatchKeyBusyError: Another run holds the batch key; nothing was sent.
        IntercomConfigurationError: The batch key holds what looks like a phone number; nothing was sent.
        LedgerError: The ledger could not be read or written.

    Example:
        ```python
        from prefect import flow
        from prefect_intercom import IntercomCredentials, create_phone_call_redirects
        from prefect_intercom.batch import read_requests_csv

        @flow(retries=2)
        def deflect(path: str):
            credentials = IntercomCredentials.load("intercom")
            report = create_phone_call_redirects(credentials, read_requests_csv(path))
            return report.counts
        ```
    """
    return await _arun_batch_task(**locals())


def _blocking(body: Callable[P, Coroutine[Any, Any, R]], name: str) -> Callable[P, R]:
    """`body` run to its end, as the function `name` with its signature (Prefect reads the task's parameters there)."""

    @functools.wraps(body)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_coro_as_sync(body(*args, **kwargs))

    blocking.__name__ = blocking.__qualname__ = name
    return blocking


# `create_phone_call_redirects` runs the sync or the async task by context (one signature, one docstring for
# both); like the single task it also carries the sync task's `submit`, `map` and `with_options`.
create_phone_call_redirects = async_dispatch(acreate_phone_call_redirects)(
    task(**_BATCH_TASK_OPTIONS)(_blocking(acreate_phone_call_redirects.fn, "create_phone_call_redirects"))
)
for _method in ("submit", "map", "with_options"):
    setattr(create_phone_call_redirects, _method, getattr(create_phone_call_redirects.__wrapped__, _method))
