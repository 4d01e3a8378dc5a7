"""Bounded waits: a rate-limit window beyond the retry budget stops the batch, nonsense headers never hang it.

A small hostile server over loopback answers with exactly the rate-limit headers each test
wants (Intercom's real sandbox windows are aligned on the clock, so a window "two hours away"
needs a server that says so).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom import IntercomCredentials, Pacer, RetryPolicy
from prefect_intercom.batch import BatchReport, asend_batch

from .conftest import SECRET_TOKEN, batch_key_of_test

# (status, headers) for the n-th request (0-based).
Answer = Callable[[int], tuple[int, dict[str, str]]]

# The ledger's digest key is a Secret block: the session's Prefect server, not a temporary one.
pytestmark = pytest.mark.usefixtures("prefect_server")


@contextmanager
def header_server(answer: Answer) -> Iterator[tuple[str, list[str]]]:
    """A loopback server answering each POST with `answer(n)`; yields its URL and the phones it received."""
    phones: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
            with lock:
                number = len(phones)
                phones.append(body.get("phone"))
            status, headers = answer(number)
            if status == 200:
                payload = {"type": "phone_call_redirect", "phone": body.get("phone")}
            else:
                payload = {
                    "type": "error.list",
                    "request_id": f"r{number}",
                    "errors": [{"code": "rate_limit_exceeded", "message": "Exceeded rate limit"}],
                }
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "X-Request-Id": f"r{number}", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", phones
    finally:
        server.shutdown()
        server.server_close()


def bodies(count: int) -> Iterator[dict[str, str]]:
    return ({"phone": f"+1415{index:07d}"} for index in range(count))


async def send(
    url: str, count: int, tmp_path: Path, *, pace: bool = True, key: str | None = None, **options: Any
) -> BatchReport:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=url, timeout=5)
    retry = options.pop("retry", RetryPolicy(max_wait=5.0, backoff=0.01))
    pacer = Pacer() if pace else None
    async with credentials.get_client(retry=retry, pacer=pacer, max_connections=20) as client:
        return await asend_batch(
            client,
            bodies(count),
            batch_key=key or batch_key_of_test("held"),
            ledger_storage=LocalFileSystem(basepath=str(tmp_path / "ledger")),
            concurrency=options.pop("concurrency", 8),
            lock=False,
            **options,
        )


def spent_after(allowed: int, reset_in: float) -> Answer:
    """A window of `allowed` requests that resets `reset_in` seconds after the server started."""
    reset = str(int(time.time() + reset_in))

    def answer(number: int) -> tuple[int, dict[str, str]]:
        remaining = max(0, allowed - number - 1)
        headers = {
            "X-RateLimit-Limit": str(allowed),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset,
        }
        return (200 if number < allowed else 429), headers

    return answer


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("pace", [True, False], ids=["paced", "unpaced"])
async def test_a_window_two_hours_away_stops_the_batch_and_a_rerun_sends_exactly_the_rest(
    pace: bool, tmp_path: Path
) -> None:
    answers = [spent_after(5, 7200)]
    with header_server(lambda number: answers[0](number)) as (url, received):  # one app: one ledger
        started = time.monotonic()
        report = await send(url, 40, tmp_path, pace=pace)
        waited = time.monotonic() - started
        first_phones = list(received)
        assert waited < 30  # never the two-hour sleep (the bound is the test's timeout; this only names it)
        assert report.counts["sent"] == 5 and report.counts["not_sent"] == 35
        reset_text = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() + 7200))
        assert reset_text in (report.stopped or ""), report.stopped
        not_sent = report.items("not_sent")
        assert all(reset_text in (item.message or "") for item in not_sent), {item.message for item in not_sent}
        answers[0] = lambda number: (200, {})  # the window reopened
        received.clear()
        rerun = await send(url, 40, tmp_path, pace=pace)
        assert sorted(received) == sorted({f"+1415{item.index:07d}" for item in not_sent})
    assert (rerun.counts["sent"], rerun.counts["skipped"]) == (35, 5)
    # Unpaced, the requests in flight when the window closed got a 429 (nothing sent): the re-run sends them.
    assert len(set(first_phones) & set(received)) <= (0 if pace else 8)


NONSENSE = {
    "limit zero": {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{soon}"},
    "negative": {"X-RateLimit-Limit": "-5", "X-RateLimit-Remaining": "-3", "X-RateLimit-Reset": "-1"},
    "year 9999": {"X-RateLimit-Limit": "1667", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "253402300799"},
    "garbage": {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "1e309", "X-RateLimit-Reset": "soon"},
    "past": {"X-RateLimit-Limit": "1667", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000000000"},
    "huge": {"X-RateLimit-Limit": str(10**30), "X-RateLimit-Remaining": str(10**30), "X-RateLimit-Reset": "{soon}"},
}


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("name", sorted(NONSENSE))
async def test_nonsense_rate_limit_headers_never_hang_or_spin_the_batch(name: str, tmp_path: Path) -> None:
    def answer(number: int) -> tuple[int, dict[str, str]]:
        soon = str(int(time.time()) + 1)
        return 200, {key: value.replace("{soon}", soon) for key, value in NONSENSE[name].items()}

    with header_server(answer) as (url, received):
        started, cpu = time.monotonic(), time.process_time()
        report = await send(url, 60, tmp_path, key=f"nonsense-{name}")
        wall, used = time.monotonic() - started, time.process_time() - cpu
    assert report.total == 60 == sum(report.counts.values())  # every item one outcome
    assert report.counts["sent"] + report.counts["not_sent"] == 60
    assert len(received) == report.counts["sent"]  # nothing was sent that the report does not count
    if report.stopped:  # a window it will not wait for: said, with the items not sent
        assert report.counts["not_sent"] == 60 - len(received)
    assert used < max(2.0, wall)  # waiting, if any, slept: no busy loop eating a core
