"""The sandbox's options, each defined once with its help text and flag, and what a running sandbox knows.

`SandboxOptions` is what `Sandbox(...)` takes as keywords and what the command line turns into
flags; `SandboxState` adds the rate-limit window, the per-request draws and what was received.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any, Literal

from prefect_intercom.client import DEFAULT_TIMEOUT

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a well-known test token, not a secret
DEFAULT_HOST = "127.0.0.1"
# Intercom's default: 10,000 calls a minute per app, counted in 10-second windows.
DEFAULT_RATE_LIMIT = 1667
DEFAULT_RATE_LIMIT_WINDOW = 10.0
# uvicorn's default: a client that keeps idle connections as long races the server closing them.
DEFAULT_KEEP_ALIVE = 5.0
FAULT_KINDS = ("429", "500", "502", "503", "html", "reset", "slow", "empty")
DATA_TYPES = ("string", "integer", "float", "boolean", "date")


def _option(help: str, default: Any = MISSING, *, factory: Any = MISSING, **argparse_keywords: Any) -> Any:
    """A field with its help text and its argparse keywords (`flag`, `type`, `action`, ...) as metadata."""
    return field(default=default, default_factory=factory, metadata={"help": help, "cli": argparse_keywords})


def rate_limit(text: str) -> int | None:
    """`--rate-limit`'s value: requests per window, `None` (no limit) for 0."""
    return int(text) or None


def parse_pair(item: str) -> tuple[str, str]:
    """A command-line `NAME=VALUE`, e.g. `"vip=boolean"`, as `("vip", "boolean")`."""
    name, _, value = item.partition("=")
    return name.strip(), value.strip()


@dataclass(kw_only=True)
class SandboxOptions:
    """How the sandbox answers: token, answer shape, rate limit, latency and faults.

    Attributes:
        token: The bearer token the sandbox accepts.
        response_shape: Answer 200 with `{type, phone}` ("phone") or `{type, url}` ("url").
        latency: Seconds to wait before every answer, or a `(low, high)` range drawn from
            uniformly per request (reproducible from `seed`).
        latency_max: With a number as `latency`, the top of the range (`latency` its bottom).
        omit_rate_limit_headers: Probability that an answer comes without the rate-limit headers.
        rate_limit: Requests allowed per window (`None`: no limit and no rate-limit headers).
        rate_limit_window: The window's length in seconds.
        retry_after: Seconds to announce in a `Retry-After` header on 429s (default: none).
        faults: Probability per fault kind, e.g. `{"429": 0.05, "503": 0.02, "reset": 0.01}`
            (kinds: `FAULT_KINDS`, described in the package docstring).
        fault_effect: Probability that a 5xx, HTML or reset fault happened after the SMS went out.
        slow_seconds: How late a `slow` answer comes (set it above the client's timeout).
        seed: Seed of the latency, header and fault draws.
        keep_alive: Seconds an idle keep-alive connection stays open (uvicorn's default, 5 s).
        data_attributes: The contact custom attributes `GET /data_attributes` lists, name to
            data type (`{"vip": "boolean"}`; default: none).
        data_attributes_status: The status `GET /data_attributes` answers (403: the token lacks
            the scope, as Intercom answers it).
        latency_range: `(low, high)` of the latency, worked out from `latency` and `latency_max`.

    Raises:
        ValueError: An option is out of range (an unknown fault kind, rates adding up past 1,
            a negative or inverted latency, ...).
    """

    token: str = _option("accepted bearer token", DEFAULT_TOKEN)
    response_shape: Literal["phone", "url"] = _option("shape of the 200 answer", "phone", choices=["phone", "url"])
    latency: float | tuple[float, float] = _option("seconds before every answer", 0.0, type=float)
    latency_max: float | None = _option(
        "draw each answer's latency uniformly between --latency and this, from --seed", None, type=float
    )
    omit_rate_limit_headers: float = _option(
        "probability that an answer comes without the X-RateLimit-* headers", 0.0, type=float, metavar="P"
    )
    rate_limit: int | None = _option("requests per window, 0 for no limit", DEFAULT_RATE_LIMIT, type=rate_limit)
    rate_limit_window: float = _option("window length in seconds", DEFAULT_RATE_LIMIT_WINDOW, type=float)
    retry_after: float | None = _option("Retry-After seconds on 429s", None, type=float)
    faults: Mapping[str, float] = _option(
        f"inject a fault with a probability, e.g. 503=0.02 (repeatable; kinds: {', '.join(FAULT_KINDS)})",
        factory=dict,
        flag="--fault",
        action="append",
        metavar="KIND=RATE",
        type=parse_pair,
    )
    fault_effect: float = _option("probability that a 5xx/HTML/reset fault still sent the SMS", 0.0, type=float)
    slow_seconds: float = _option("how late a 'slow' answer comes", DEFAULT_TIMEOUT + 5, type=float)
    seed: int = _option("seed of the latency, header and fault draws", 0, type=int)
    keep_alive: float = _option(
        "seconds an idle keep-alive connection stays open (uvicorn's default)", DEFAULT_KEEP_ALIVE, type=float
    )
    data_attributes: Mapping[str, str] = _option(
        "a contact custom attribute GET /data_attributes lists, e.g. vip=boolean (repeatable; types: "
        f"{', '.join(DATA_TYPES)})",
        factory=dict,
        flag="--data-attribute",
        action="append",
        metavar="NAME=TYPE",
        type=parse_pair,
    )
    data_attributes_status: int = _option(
        "answer GET /data_attributes with this status (403: a token without the scope)", 200, type=int
    )
    latency_range: tuple[float, float] = field(init=False, default=(0.0, 0.0))

    def __post_init__(self) -> None:
        self.faults = {kind: float(rate) for kind, rate in dict(self.faults or {}).items()}  # or (kind, rate) pairs
        if unknown := sorted(set(self.faults) - set(FAULT_KINDS)):
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if any(not 0 <= rate <= 1 for rate in self.faults.values()) or sum(self.faults.values()) > 1:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")
        if self.rate_limit is not None and (self.rate_limit < 1 or self.rate_limit_window <= 0):
            raise ValueError("rate_limit must be at least 1 and rate_limit_window positive")
        if isinstance(self.latency, int | float):
            low, high = float(self.latency), float(self.latency if self.latency_max is None else self.latency_max)
        elif self.latency_max is not None:
            raise ValueError("give the latency as a (low, high) pair or as latency and latency_max, not both")
        else:
            low, high = (float(value) for value in self.latency)
        if not 0 <= low <= high < math.inf:  # NaN fails every comparison
            raise ValueError(f"the latency range must be finite, not negative and low <= high, not {low:g}..{high:g}")
        if self.slow_seconds < 0 or not 0 <= self.fault_effect <= 1 or not 0 <= self.omit_rate_limit_headers <= 1:
            raise ValueError("slow_seconds must be >= 0; fault_effect and omit_rate_limit_headers are probabilities")
        self.data_attributes = dict(self.data_attributes or {})
        wrong = sorted(f"{name}={type_}" for name, type_ in self.data_attributes.items() if type_ not in DATA_TYPES)
        if wrong or not all(self.data_attributes):
            raise ValueError(f"data attributes are NAME=TYPE with a type of {', '.join(DATA_TYPES)}, not {wrong}")
        if not 200 <= self.data_attributes_status <= 599:
            raise ValueError("data_attributes_status is an HTTP status")
        self.latency_range = (low, high)


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
        record = {**asdict(self), "accepted": self.accepted}
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
    _arrivals: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)  # by (counter, phone)

    def admit(self, now: float) -> tuple[bool, dict[str, str]]:
        """Count one authenticated request in its window: (within the limit?, rate-limit headers)."""
        if self.rate_limit is None:
            return True, {}
        start = math.floor(now / self.rate_limit_window) * self.rate_limit_window
        with self.lock:
            count = self._window[1] if self._window[0] == start else 0  # a new window starts at 0
            if admitted := count < self.rate_limit:
                count += 1
            self._window = (start, count)
        return admitted, {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_limit - count),
            "X-RateLimit-Reset": str(math.ceil(start + self.rate_limit_window)),
        }

    def draw_shape(self, body: Any) -> tuple[float, bool]:
        """This request's latency and whether its answer keeps the rate-limit headers.

        Drawn from `seed`, the phone and how many times that phone arrived (a count of its
        own, so that the fault draws stay what they were), hence reproducible whatever the
        concurrency.
        """
        low, high = self.latency_range
        if low == high and not self.omit_rate_limit_headers:
            return low, True
        draw = self._draws("shape", body)
        return low + (high - low) * draw("latency"), draw("omit-headers") >= self.omit_rate_limit_headers

    def draw_fault(self, body: Any) -> tuple[str | None, bool]:
        """The fault for this request, if any, and whether an uncertain fault still sent the SMS."""
        if not self.faults:
            return None, False
        draws = self._draws("fault", body)
        draw = draws("fault")
        for kind in FAULT_KINDS:
            rate = self.faults.get(kind, 0.0)
            if draw < rate:
                return kind, kind in _UNCERTAIN_FAULTS and draws("effect") < self.fault_effect
            draw -= rate
        return None, False

    def _draws(self, counter: str, body: Any) -> Callable[[str], float]:
        """Reproducible draws in [0, 1), one per purpose, for (seed, phone, n-th arrival of that phone, purpose).

        The arrivals are counted apart for each `counter`, this one counted.
        """
        phone = body.get("phone") if isinstance(body, dict) else None
        key = phone if isinstance(phone, str) else ""
        with self.lock:
            arrival = self._arrivals[counter, key] = self._arrivals.get((counter, key), -1) + 1

        def uniform(purpose: str) -> float:
            digest = hashlib.blake2b(f"{self.seed}|{purpose}|{arrival}|{key}".encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") / 2**64

        return uniform

    def record(self, entry: ReceivedRequest, *, read: bool = False) -> None:
        """Keep a received request (`read`: a `GET /data_attributes`, kept apart)."""
        with self.lock:
            (self.reads if read else self.received).append(entry)

    def snapshot(self, *, reads: bool = False) -> list[ReceivedRequest]:
        """A copy of the requests (or the reads) received so far."""
        with self.lock:
            return list(self.reads if reads else self.received)

    def clear(self) -> None:
        """Forget what was received (and how often each phone arrived)."""
        with self.lock:
            self.received.clear()
            self.reads.clear()
            self._arrivals.clear()
