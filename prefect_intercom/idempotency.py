"""Flow retries never resend: each send is remembered per flow run, keyed on what it sends.

`SentOncePerFlowRun` is the single task's cache policy (a 2xx comes back `Cached` on a retry);
`SendGuard` marks a send that did not end in a 2xx. What counts as the same call: docs/flow-retries.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.results import ResultStore
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE

from prefect_intercom.errors import EarlierAttemptUnknownError, IntercomConfigurationError, IntercomError
from prefect_intercom.outcomes import Outcome
from prefect_intercom.retry import RetryPolicy, outcome_of

KEY_PREFIX = "prefect-intercom-sent-"
MARKER_SUFFIX = ".sending"
_KEY_VERSION = "prefect-intercom/once-per-flow-run/1"
# Attempts whose occurrence counts are kept in one process (the oldest are forgotten first).
MAX_TRACKED_ATTEMPTS = 1024

IN_FLIGHT = "in flight"

BodyFromInputs = Callable[[dict[str, Any]], dict[str, Any]]


class OccurrenceCounter:
    """Numbers identical calls within one flow-run attempt: 1, 2, 3, ... (thread-safe).

    A task run keeps its number when Prefect computes its key again (task retries). Counts
    live in this process; the counts of `MAX_TRACKED_ATTEMPTS` attempts are kept, and a new
    attempt of a flow run drops the counts of its earlier attempts.
    """

    def __init__(self, max_attempts: int = MAX_TRACKED_ATTEMPTS) -> None:
        self._lock = threading.Lock()
        # (flow run id, run count) -> (number by identity, number by task run)
        self._attempts: OrderedDict[tuple[UUID, int], tuple[dict[str, int], dict[UUID, int]]] = OrderedDict()
        self._max_attempts = max_attempts

    def number(self, flow_run_id: UUID, run_count: int, identity: str, task_run_id: UUID | None = None) -> int:
        """The occurrence number of the call `identity` made by task run `task_run_id`.

        Args:
            flow_run_id: The flow run.
            run_count: Which attempt of the flow run this is (Prefect's `run_count`).
            identity: Everything that makes two calls the same, hashed.
            task_run_id: The task run making the call (`None`: every call is a new occurrence).

        Returns:
            1 for the first such call in this attempt, 2 for the second, and so on.
        """
        with self._lock:
            attempt = (flow_run_id, run_count)
            if attempt not in self._attempts:
                for earlier in [key for key in self._attempts if key[0] == flow_run_id]:
                    del self._attempts[earlier]
            by_identity, by_task_run = self._attempts.setdefault(attempt, ({}, {}))
            self._attempts.move_to_end(attempt)
            while len(self._attempts) > self._max_attempts:
                self._attempts.popitem(last=False)
            number = by_task_run.get(task_run_id) if task_run_id is not None else None
            if number is None:
                number = by_identity[identity] = by_identity.get(identity, 0) + 1
                if task_run_id is not None:
                    by_task_run[task_run_id] = number
            return number


OCCURRENCES = OccurrenceCounter()


@dataclass
class SentOncePerFlowRun(CachePolicy):
    """A Prefect cache policy: one key per call per flow run (see the module docstring).

    Attributes:
        endpoint: The catalogue name of the endpoint, part of the key.
        body_from_inputs: Builds the request body from the task's parameters.
    """

    endpoint: str = ""
    body_from_inputs: BodyFromInputs | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The key of this call, or `None` outside a flow run (nothing is remembered).

        Args:
            task_ctx: The task run's context.
            inputs: The task's parameters (`credentials`, `phone`, `custom_attributes`, ...).
            flow_parameters: Not used.
            **kwargs: Not used.
        """
        return self.occurrence_key(task_ctx, inputs)[0]

    def occurrence_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any]) -> tuple[str | None, int]:
        """The key of this call and its occurrence number (`(None, 0)` outside a flow run)."""
        flow_run = _flow_run()
        if flow_run is None or self.body_from_inputs is None:
            return None, 0
        credentials = inputs["credentials"]
        token = credentials.access_token.get_secret_value().encode()
        app = hmac.new(_KEY_VERSION.encode() + flow_run.id.bytes, token, hashlib.sha256).hexdigest()
        identity = _digest(
            [_KEY_VERSION, str(flow_run.id), self.endpoint, credentials.api_url, app, self.body_from_inputs(inputs)]
        )
        occurrence = OCCURRENCES.number(flow_run.id, flow_run.run_count, identity, task_ctx.task_run.id)
        return KEY_PREFIX + _digest([identity, occurrence]), occurrence


@dataclass
class SendGuard:
    """The marker of one send, for a flow retry of a call that did not end in a 2xx.

    Attributes:
        store: The task run's result store (where Prefect keeps the remembered result).
        marker_key: Where the marker is kept: the call's cache key and `MARKER_SUFFIX`.
        flow_run_id: The flow run.
        occurrence: The call's occurrence number.
        retrying: Whether this is a later attempt of the flow run (only then can a marker exist).
        retry_unknown: Whether an earlier unknown outcome may be sent again.
    """

    store: ResultStore
    marker_key: str
    flow_run_id: UUID
    occurrence: int
    retrying: bool
    retry_unknown: bool

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Around one send: refuse an earlier unknown outcome, mark in flight, record a failure."""
        if self.retrying and self.store.exists(self.marker_key):
            marker = None  # an unreadable marker is checked as such
            with contextlib.suppress(Exception):
                marker = self.store.read(self.marker_key).result
            self._check(marker)
        self._write(Outcome.UNKNOWN, IN_FLIGHT)
        try:
            yield
        except IntercomError as error:
            # A marker that cannot be rewritten stays "in flight": the retry refuses, the safe side.
            with contextlib.suppress(IntercomError):
                self._write(*_failure(error))
            raise

    @contextlib.asynccontextmanager
    async def asending(self) -> AsyncIterator[None]:
        """Async twin of `sending`."""
        if self.retrying and await self.store.aexists(self.marker_key):
            marker = None
            with contextlib.suppress(Exception):
                marker = (await self.store.aread(self.marker_key)).result
            self._check(marker)
        await self._awrite(Outcome.UNKNOWN, IN_FLIGHT)
        try:
            yield
        except IntercomError as error:
            with contextlib.suppress(IntercomError):
                await self._awrite(*_failure(error))
            raise

    def _check(self, marker: Any) -> None:
        """Raise unless the earlier attempt provably did not send (or unknowns may be resent)."""
        state = marker.get("outcome") if isinstance(marker, dict) else None
        earlier = str(marker.get("detail") or IN_FLIGHT) if isinstance(marker, dict) else "unreadable marker"
        if state == Outcome.NOT_SENT.value or self.retry_unknown:
            get_run_logger().info(
                "An earlier attempt of this flow run made this call; it ended %s (%s); sending again%s",
                state or "unreadable",
                earlier,
                "" if state == Outcome.NOT_SENT.value else " as retry_unknown allows",
            )
            return
        raise EarlierAttemptUnknownError(earlier=earlier, flow_run_id=self.flow_run_id, occurrence=self.occurrence)

    def _write(self, state: Outcome, detail: str) -> None:
        try:
            self.store.write(obj=_marker(state, detail), key=self.marker_key)
        except Exception as error:
            raise _storage_error(error) from None

    async def _awrite(self, state: Outcome, detail: str) -> None:
        try:
            await self.store.awrite(obj=_marker(state, detail), key=self.marker_key)
        except Exception as error:
            raise _storage_error(error) from None


def send_guard(retry: RetryPolicy | None) -> SendGuard | None:
    """The guard of the current task run's send, or `None` when nothing is remembered.

    `None` outside a flow run, when the task's cache policy is not `SentOncePerFlowRun`
    (e.g. `with_options(cache_policy=NO_CACHE)`), or when Prefect is told to refresh caches.

    Args:
        retry: The task's retry policy (its `retry_unknown` applies to earlier attempts too).
    """
    task_ctx = TaskRunContext.get()
    policy = task_ctx.task.cache_policy if task_ctx is not None else None
    if task_ctx is None or not isinstance(policy, SentOncePerFlowRun) or _refreshing(task_ctx):
        return None
    key, occurrence = policy.occurrence_key(task_ctx, task_ctx.parameters)
    flow_run = _flow_run()
    if key is None or flow_run is None:
        return None
    return SendGuard(
        store=task_ctx.result_store,
        marker_key=key + MARKER_SUFFIX,
        flow_run_id=flow_run.id,
        occurrence=occurrence,
        retrying=flow_run.run_count > 1,
        retry_unknown=bool(retry and retry.retry_unknown),
    )


def _flow_run() -> Any:
    context = FlowRunContext.get()
    return context.flow_run if context is not None else None


def _refreshing(task_ctx: TaskRunContext) -> bool:
    refresh = task_ctx.task.refresh_cache
    return bool(refresh if refresh is not None else PREFECT_TASKS_REFRESH_CACHE.value())


def _digest(parts: list[Any]) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_stable)
    return hashlib.sha256(text.encode()).hexdigest()


def _stable(value: Any) -> str:
    return f"<{type(value).__qualname__}>{value!r}"


def _marker(state: Outcome, detail: str) -> dict[str, Any]:
    return {"outcome": state.value, "detail": detail, "at": dt.datetime.now(dt.UTC).isoformat()}


def _failure(error: IntercomError) -> tuple[Outcome, str]:
    """The marker for a failed send: `not_sent` when it provably did not text, else `unknown`."""
    named = [(name, getattr(error, name, None)) for name in ("status_code", "error_code", "request_id")]
    return outcome_of(error), " ".join([type(error).__name__, *(f"{n}={v}" for n, v in named if v is not None)])


def _storage_error(error: Exception) -> IntercomError:
    return IntercomConfigurationError(
        f"Cannot record this send in the task's result storage ({type(error).__name__}); nothing was sent. "
        "Fix the result storage, or opt out of flow-retry protection with "
        "create_phone_call_redirect.with_options(cache_policy=NO_CACHE)."
    )
