"""The sandbox's rate-limit windows, latency and injected faults, seen through the real client."""

from __future__ import annotations

import math
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from prefect_intercom import (
    IntercomAPIError,
    IntercomCredentials,
    IntercomRateLimitError,
    IntercomServerError,
    IntercomTransportError,
    Outcome,
)
from prefect_intercom.client import IntercomClient
from prefect_intercom.responses import RATE_LIMIT_HEADERS
from prefect_intercom.sandbox import FAULT_KINDS, Sandbox, SandboxState
from prefect_intercom.sandbox.process import sandbox_process

from .conftest import SECRET_TOKEN, clear_of_window_edge

PATH = "/phone_call_redirects"


def client_for(sandbox: Sandbox, timeout: float = 5.0) -> IntercomClient:
    return IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url, timeout=timeout).get_client()


def post(
    url: str, phone: str = "+14155550100", token: str = SECRET_TOKEN, client: httpx.Client | None = None
) -> httpx.Response:
    sender = client or httpx
    return sender.post(f"{url}{PATH}", json={"phone": phone}, headers={"Authorization": f"Bearer {token}"})


# --- rate-limit windows ---------------------------------------------------------------------


def test_every_authenticated_answer_carries_the_rate_limit_headers() -> None:
    with Sandbox(token=SECRET_TOKEN, rate_limit=3, rate_limit_window=2) as sandbox:
        answers = [post(sandbox.url, f"+1415555010{n}") for n in range(5)]
        unauthenticated = post(sandbox.url, token="wrong")
    limits = {answer.headers["x-ratelimit-limit"] for answer in answers}
    resets = {int(answer.headers["x-ratelimit-reset"]) for answer in answers}
    assert limits == {"3"}
    assert all(reset % 2 == 0 and reset > time.time() - 3 for reset in resets)  # window ends, on multiples
    remaining = [int(answer.headers["x-ratelimit-remaining"]) for answer in answers]
    statuses = [answer.status_code for answer in answers]
    if len(resets) == 1:  # all in one window (the usual case)
        assert remaining == [2, 1, 0, 0, 0]
        assert statuses == [200, 200, 200, 429, 429]
    assert unauthenticated.status_code == 401
    assert not any(name.startswith("x-ratelimit") for name in unauthenticated.headers)


def test_a_429_is_intercoms_error_list_and_sends_nothing() -> None:
    clear_of_window_edge(60, margin=5)
    with Sandbox(token=SECRET_TOKEN, rate_limit=1, rate_limit_window=60, retry_after=1.5) as sandbox:
        with client_for(sandbox) as client:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
            with pytest.raises(IntercomRateLimitError) as caught:
                client.request("phone_call_redirects", {"phone": "+14155550101"})
        accepted = [entry.body["phone"] for entry in sandbox.accepted]
    error = caught.value
    assert error.error_code == "rate_limit_exceeded"
    assert error.message == "Exceeded rate limit of 1 in 60_seconds"
    assert (error.limit, error.remaining, error.retry_after) == (1, 0, 1.5)
    assert error.reset_at is not None and error.reset_at.timestamp() % 60 == 0
    assert error.outcome is Outcome.NOT_SENT
    assert accepted == ["+14155550100"]


def test_the_default_limit_is_intercoms_and_none_means_no_headers() -> None:
    with Sandbox(token=SECRET_TOKEN) as default, Sandbox(token=SECRET_TOKEN, rate_limit=None) as unlimited:
        assert post(default.url).headers["x-ratelimit-limit"] == "1667"
        assert "x-ratelimit-limit" not in post(unlimited.url).headers


def test_latency_delays_every_answer() -> None:
    with Sandbox(token=SECRET_TOKEN, latency=0.2) as sandbox, client_for(sandbox) as client:
        response = client.request("phone_call_redirects", {"phone": "+14155550100"})
    assert response.elapsed_ms >= 200


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_seconds() -> None:
    with Sandbox(token=SECRET_TOKEN, keep_alive=0.2) as sandbox:
        with socket.create_connection(("127.0.0.1", sandbox.port), timeout=3) as connection:
            body = b'{"phone": "+14155550100"}'
            head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET_TOKEN}\r\n"
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            connection.sendall(head.encode() + body)
            answer = b""
            while b"phone_call_redirect" not in answer:
                answer += connection.recv(65536)
            assert connection.recv(65536) == b""  # closed by the server (the default, 5 s, would time out)


def _latencies(seed: int, **options: Any) -> list[float]:
    state = SandboxState(seed=seed, **options)
    return [state.draw_shape({"phone": f"+1415{n:07d}"})[0] for n in range(4_000)]


def test_a_latency_range_draws_each_answers_latency_uniformly_from_the_seed() -> None:
    drawn = _latencies(3, latency=(0.15, 0.4))
    assert all(0.15 <= latency <= 0.4 for latency in drawn)
    assert min(drawn) < 0.152 and max(drawn) > 0.398
    assert statistics.mean(drawn) == pytest.approx(0.275, abs=0.005)
    assert sum(latency < 0.2 for latency in drawn) / len(drawn) == pytest.approx(0.2, abs=0.02)
    assert drawn == _latencies(3, latency=0.15, latency_max=0.4)  # the same range, said the other way
    assert drawn != _latencies(4, latency=(0.15, 0.4))
    assert set(_latencies(3, latency=0.2)) == {0.2}  # a single value stays fixed


def test_each_answer_is_held_back_by_its_own_drawn_latency() -> None:
    with Sandbox(token=SECRET_TOKEN, latency=(0.05, 0.15), seed=7) as sandbox, client_for(sandbox) as client:
        elapsed = [client.request("phone_call_redirects", {"phone": f"+1415555010{n}"}).elapsed_ms for n in range(6)]
        drawn = [entry.latency for entry in sandbox.received]
    assert all(0.05 <= latency <= 0.15 for latency in drawn) and len(set(drawn)) == 6
    assert all(ms >= latency * 1000 for ms, latency in zip(elapsed, drawn, strict=True))


def test_some_answers_come_without_the_rate_limit_headers() -> None:
    options = {"rate_limit": 10_000, "rate_limit_window": 60, "omit_rate_limit_headers": 0.3, "seed": 2}
    with Sandbox(token=SECRET_TOKEN, **options) as sandbox, httpx.Client() as client:
        answers = [post(sandbox.url, f"+1415555{n:04d}", client=client) for n in range(200)]
        recorded = [entry.rate_limit_headers for entry in sandbox.received]
    carried = [all(name in answer.headers for name in RATE_LIMIT_HEADERS) for answer in answers]
    bare = [not any(name in answer.headers for name in RATE_LIMIT_HEADERS) for answer in answers]
    assert all(has or none for has, none in zip(carried, bare, strict=True))  # all three, or none at all
    assert 40 <= bare.count(True) <= 80  # about 30%
    assert recorded == carried
    remaining = [
        int(answer.headers["x-ratelimit-remaining"]) for answer in answers if "x-ratelimit-remaining" in answer.headers
    ]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] <= 10_000 - 200  # every request still counted


def test_answers_without_headers_are_drawn_from_the_seed() -> None:
    def bare(seed: int) -> list[bool]:
        state = SandboxState(omit_rate_limit_headers=0.3, seed=seed)
        return [not state.draw_shape({"phone": f"+1415{n:07d}"})[1] for n in range(2_000)]

    assert bare(5) == bare(5) != bare(6)
    assert sum(bare(5)) / 2_000 == pytest.approx(0.3, abs=0.03)
    assert not any(not SandboxState().draw_shape({"phone": "+14155550100"})[1] for _ in range(10))


# --- faults ---------------------------------------------------------------------------------


def only(kind: str, **options: float) -> Sandbox:
    return Sandbox(token=SECRET_TOKEN, faults={kind: 1.0}, **options)


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503), ("502", 502), ("html", 503)])
def test_server_errors_are_unknown_outcomes(kind: str, status: int) -> None:
    with only(kind) as sandbox, client_for(sandbox) as client:
        with pytest.raises(IntercomServerError) as caught:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        [entry] = sandbox.received
    assert caught.value.status_code == status
    assert caught.value.outcome is Outcome.UNKNOWN
    if kind in ("502", "html"):
        assert "non-JSON body (text/html" in caught.value.message
    assert (entry.fault, entry.accepted) == (kind, False)


def test_fault_effect_decides_whether_a_failed_answer_still_sent_the_sms() -> None:
    with only("503", fault_effect=1.0) as sandbox, client_for(sandbox) as client:
        with pytest.raises(IntercomServerError):
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert [entry.accepted for entry in sandbox.received] == [True]


def test_reset_drops_the_connection_before_any_answer() -> None:
    with only("reset") as sandbox, client_for(sandbox) as client:
        with pytest.raises(IntercomTransportError) as caught:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert caught.value.outcome is Outcome.UNKNOWN
        assert SECRET_TOKEN not in str(caught.value)
        assert [entry.fault for entry in sandbox.received] == ["reset"]


def test_a_slow_answer_times_out_but_the_sms_went_out() -> None:
    with only("slow", slow_seconds=1.0) as sandbox, client_for(sandbox, timeout=0.2) as client:
        with pytest.raises(IntercomTransportError) as caught:
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert caught.value.outcome is Outcome.UNKNOWN
        assert "ReadTimeout" in str(caught.value)
        assert [(entry.status, entry.accepted) for entry in sandbox.received] == [(200, True)]


def test_an_empty_200_is_still_a_success() -> None:
    with only("empty") as sandbox, client_for(sandbox) as client:
        response = client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert (response.status_code, response.data) == (200, {})
        assert [entry.accepted for entry in sandbox.received] == [True]


def test_an_injected_429_is_a_rate_limit_error() -> None:
    with only("429") as sandbox, client_for(sandbox) as client:
        with pytest.raises(IntercomRateLimitError):
            client.request("phone_call_redirects", {"phone": "+14155550100"})
        assert sandbox.accepted == []


def test_faults_do_not_hide_the_contract_for_refused_requests() -> None:
    with only("slow", slow_seconds=0.1) as sandbox, client_for(sandbox) as client:
        with pytest.raises(IntercomAPIError) as caught:
            client.request("phone_call_redirects", {"phone": "+15005550001"})  # sms_failed
        assert caught.value.error_code == "sms_failed"
        assert sandbox.accepted == []


def _draws(seed: int, workers: int) -> dict[str, str | None]:
    faults = {"429": 0.05, "503": 0.02, "reset": 0.01, "empty": 0.02}
    with Sandbox(token=SECRET_TOKEN, faults=faults, seed=seed, rate_limit=None) as sandbox:
        phones = [f"+1415555{n:04d}" for n in range(300)]
        with httpx.Client() as client, ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda phone: _swallow(sandbox.url, phone, client), phones))
        return {entry.body["phone"]: entry.fault for entry in sandbox.received}


def _swallow(url: str, phone: str, client: httpx.Client) -> None:
    try:
        post(url, phone, client=client)
    except httpx.TransportError:
        pass


def test_faults_are_reproducible_from_the_seed_whatever_the_concurrency() -> None:
    one_by_one, concurrent = _draws(seed=11, workers=1), _draws(seed=11, workers=8)
    assert one_by_one == concurrent
    assert any(one_by_one.values())
    assert _draws(seed=12, workers=4) != one_by_one


def test_fault_rates_are_respected() -> None:
    state = SandboxState(faults={"429": 0.05, "503": 0.02, "reset": 0.01, "slow": 0.01}, seed=3)
    drawn = [state.draw_fault({"phone": f"+1415{n:07d}"})[0] for n in range(20_000)]
    for kind, rate in {"429": 0.05, "503": 0.02, "reset": 0.01, "slow": 0.01}.items():
        assert math.isclose(drawn.count(kind) / len(drawn), rate, abs_tol=0.004), kind
    assert drawn.count(None) / len(drawn) == pytest.approx(0.91, abs=0.01)


@pytest.mark.parametrize(
    "options",
    [
        {"faults": {"teapot": 0.1}},
        {"faults": {"503": 0.7, "429": 0.5}},
        {"faults": {"503": -0.1}},
        {"rate_limit": 0},
        {"latency": -0.1},
        {"latency": (0.4, 0.15)},
        {"latency": 0.4, "latency_max": 0.15},
        {"latency": (0.1, 0.2), "latency_max": 0.3},
        {"latency": (0.1, float("inf"))},
        {"omit_rate_limit_headers": 1.5},
    ],
)
def test_bad_settings_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        Sandbox(token=SECRET_TOKEN, **options)


def test_every_documented_fault_kind_is_known() -> None:
    assert set(FAULT_KINDS) == {"429", "500", "502", "503", "html", "reset", "slow", "empty"}


# --- the command line -----------------------------------------------------------------------


def test_command_line_flags_configure_the_same_behaviour() -> None:
    flags = ["--rate-limit", "2", "--rate-limit-window", "60", "--retry-after", "0.5", "--latency", "0.01"]
    clear_of_window_edge(60, margin=10)
    with sandbox_process(*flags, "--fault", "empty=1", "--seed", "5", token=SECRET_TOKEN) as sandbox:
        answers = [post(sandbox.url, f"+1415555010{n}") for n in range(3)]
        records = sandbox.records()
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].content == b""  # the "empty" fault
    assert answers[2].headers["retry-after"] == "0.5"
    assert [record["fault"] for record in records] == ["empty", "empty", None]
    assert [record["accepted"] for record in records] == [True, True, False]
    assert all(record["headers"]["authorization"] == "Bearer [REDACTED]" for record in records)


def test_command_line_flags_set_a_latency_range_and_answers_without_headers() -> None:
    flags = ["--latency", "0.01", "--latency-max", "0.03", "--omit-rate-limit-headers", "1", "--seed", "9"]
    with sandbox_process(*flags, token=SECRET_TOKEN) as sandbox:
        answers = [post(sandbox.url, f"+1415555010{n}") for n in range(4)]
        records = sandbox.records()
    assert [answer.status_code for answer in answers] == [200] * 4
    assert not any(name in answer.headers for answer in answers for name in RATE_LIMIT_HEADERS)
    assert all(0.01 <= record["latency"] <= 0.03 for record in records)
    assert [record["rate_limit_headers"] for record in records] == [False] * 4


def test_command_line_refuses_unknown_faults() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "prefect_intercom.sandbox", "--port", "0", "--fault", "teapot=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown fault kinds" in result.stderr
