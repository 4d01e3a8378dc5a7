"""What a running sandbox knows: its options, the rate-limit window, the per-request draws, what it received."""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect_intercom.sandbox.options import FAULT_KINDS, SandboxOptions

# Faults that may or may not have sent the SMS before failing (`fault_effect`).
_UNCERTAIN_FAULTS = frozenset({"500", "502", "503", "html", "reset"})


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the sandbox received.

    Attributes:
        method: HTTP method.
        path: URL path.
        headers: Request headers, lower-cased names, as received.
        body: The JSON body, or `None` when it was not JSON.
        status: The status the sandbox answered with.
        request_id: The request id the sandbox answered with.
        received_at: UNIX time of arrival.
        fault: The injected fault (`"503"`, `"reset"`, ...), if any.
        delivered: Whether the SMS went out; `None` means "if answered 200".
        latency: Seconds the answer was held back (the drawn latency).
        rate_limit_headers: Whether the answer carried the `X-RateLimit-*` headers.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str
    received_at: float
    fault: str | None = None
    delivered: bool | None = None
    latency: float = 0.0
    rate_limit_headers: bool = False

    @property
    def accepted(self) -> bool:
        """Whether this request "sent an SMS" (a real person would have received it)."""
        return self.delivered if self.delivered is not None else self.status == 200

    def public(self) -> dict[str, Any]:
        """This record as JSON data with the Authorization header redacted (and `accepted`)."""
        record = asdict(self)
        record["accepted"] = self.accepted
        if "authorization" in record["headers"]:
            record["headers"]["authorization"] = "Bearer [REDACTED]"
        return record


@dataclass(kw_only=True)
class SandboxState(SandboxOptions):
    """The sandbox's options (see `SandboxOptions`) and what it keeps while it runs.

    Attributes:
        received: Every request of the endpoint received, in order of arrival.
        reads: Every `GET /data_attributes` received (kept apart: it texts nobody).
        lock: Guards the window, the arrival counts and `received`.
        server: The uvicorn server answering (the `reset` fault reaches into its connections).
    """

    received: list[ReceivedRequest] = field(default_factory=list)
    reads: list[ReceivedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    server: Any = field(default=None, repr=False)
    _window: tuple[float, int] = (0.0, 0)
    _arrivals: dict[str, int] = field(default_factory=dict, repr=False)
    _shape_arrivals: dict[str, int] = field(default_factory=dict, repr=False)

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count one authenticated request in its window: (within the limit?, rate-limit headers)."""
        if self.rate_limit is None:
            return True, {}
        width = self.rate_limit_window
        start = math.floor(now / width) * width
        with self.lock:
            window_start, count = self._window
            if window_start != start:
                count = 0
            admitted = count < self.rate_limit
            if admitted:
                count += 1
            self._window = (start, count)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_limit - count),
            "X-RateLimit-Reset": str(math.ceil(start + width)),
        }
        return admitted, headers

    def draw_shape(self, body: Any) -> tuple[float, bool]:
        """This request's latency and whether its answer keeps the rate-limit headers.

        Drawn from `seed`, the phone and how many times that phone arrived (a count of its
        own, so that the fault draws stay what they were), hence reproducible whatever the
        concurrency.
        """
        low, high = self.latency_range
        if low == high and not self.omit_rate_limit_headers:
            return low, True
        key = _phone_key(body)
        with self.lock:
            arrival = self._shape_arrivals.get(key, 0)
            self._shape_arrivals[key] = arrival + 1
        latency = low + (high - low) * _uniform(self.seed, key, arrival, "latency") if high > low else low
        omit = _uniform(self.seed, key, arrival, "omit-headers") < self.omit_rate_limit_headers
        return latency, not omit

    def draw_fault(self, body: Any) -> tuple[str | None, bool]:
        """The fault for this request, if any, and whether an uncertain fault still sent the SMS."""
        if not self.faults:
            return None, False
        key = _phone_key(body)
        with self.lock:
            arrival = self._arrivals.get(key, 0)
            self._arrivals[key] = arrival + 1
        draw = _uniform(self.seed, key, arrival, "fault")
        for kind in FAULT_KINDS:
            rate = self.faults.get(kind, 0.0)
            if draw < rate:
                effect = kind in _UNCERTAIN_FAULTS and _uniform(self.seed, key, arrival, "effect") < self.fault_effect
                return kind, effect
            draw -= rate
        return None, False

    def record(self, entry: ReceivedRequest) -> None:
        """Keep a received request."""
        with self.lock:
            self.received.append(entry)

    def record_read(self, entry: ReceivedRequest) -> None:
        """Keep a received read (`GET /data_attributes`)."""
        with self.lock:
            self.reads.append(entry)

    def read_snapshot(self) -> list[ReceivedRequest]:
        """A copy of the reads received so far."""
        with self.lock:
            return list(self.reads)

    def snapshot(self) -> list[ReceivedRequest]:
        """A copy of what was received so far."""
        with self.lock:
            return list(self.received)

    def clear(self) -> None:
        """Forget what was received (and how often each phone arrived)."""
        with self.lock:
            self.received.clear()
            self.reads.clear()
            self._arrivals.clear()
            self._shape_arrivals.clear()


def _phone_key(body: Any) -> str:
    phone = body.get("phone") if isinstance(body, dict) else None
    return phone if isinstance(phone, str) else ""


def _uniform(seed: int, key: str, arrival: int, purpose: str) -> float:
    """A reproducible draw in [0, 1) for (seed, phone, n-th arrival of that phone, purpose)."""
    digest = hashlib.blake2b(f"{seed}|{purpose}|{arrival}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
