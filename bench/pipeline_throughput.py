"""Pipeline throughput against a zero-latency loopback server, vs raw httpx and the official SDK.

Sequential sends (one in flight) from one process to a server in another process that
answers at once, so the client's own cost per request is what is measured. Every contender
keeps one client (one keep-alive connection); each round runs a block of requests through
every contender in turn, so that load from elsewhere on the machine hits all of them alike,
and the median of the rounds is kept. Contenders:

- raw httpx.Client: `client.post(url, content=json, headers=...)` and `response.json()`;
- the pipeline: `IntercomClient.request()`: validate, prepare, send, parse (no retry policy);
- the pipeline as the tasks use it: with the default `RetryPolicy` and header pacing;
- the official SDK (`python-intercom`): `client.phone_call_redirects.create(...)`.

Run: `.venv/bin/python bench/pipeline_throughput.py [--requests 500] [--rounds 15]`.
Goals: pipeline >= 0.85x raw httpx and >= 1.3x the SDK. The ratios are printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TOKEN, median, zero_latency_server

from prefect_intercom import Pacer, RetryPolicy
from prefect_intercom.client import IntercomClient
from prefect_intercom.prepared import USER_AGENT

BODY = {"phone": "+14155550100", "custom_attributes": {"issue_type": "Billing", "priority": "High"}}


def raw_httpx(url: str) -> tuple[Callable[[], None], Callable[[], None]]:
    client = httpx.Client(timeout=30)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Intercom-Version": "2.12",
        "User-Agent": USER_AGENT,
    }
    target = f"{url}/phone_call_redirects"

    def once() -> None:
        response = client.post(target, content=json.dumps(BODY).encode(), headers=headers)
        response.raise_for_status()
        response.json()

    return once, client.close


def pipeline(url: str, *, tasks_defaults: bool = False) -> tuple[Callable[[], None], Callable[[], None]]:
    options = {"retry": RetryPolicy(), "pacer": Pacer()} if tasks_defaults else {}
    client = IntercomClient(TOKEN, base_url=url, intercom_version="2.12", **options)

    def once() -> None:
        client.request("phone_call_redirects", BODY)

    return once, client.close


def sdk(url: str) -> tuple[Callable[[], None], Callable[[], None]]:
    from intercom import CreatePhoneSwitchRequest, Intercom

    client = Intercom(token=TOKEN, base_url=url, timeout=30)
    request = CreatePhoneSwitchRequest(**BODY)

    def once() -> None:
        client.phone_call_redirects.create(request=request)

    return once, client._client_wrapper.httpx_client.httpx_client.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="requests per contender per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    contenders = {
        "raw httpx.Client": raw_httpx,
        "pipeline (IntercomClient.request)": pipeline,
        "pipeline + RetryPolicy + Pacer": lambda url: pipeline(url, tasks_defaults=True),
        "official SDK (python-intercom)": sdk,
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as tmp, zero_latency_server(tmp) as url:
        clients = {name: make(url) for name, make in contenders.items()}
        for once, _ in clients.values():  # warm up: imports, connections, caches
            for _ in range(200):
                once()
        for round_number in range(args.rounds):
            for name, (once, _) in clients.items():
                started = time.perf_counter()
                for _ in range(args.requests):
                    once()
                rates[name].append(args.requests / (time.perf_counter() - started))
            line = ", ".join(f"{name.split(' (')[0]} {values[-1]:,.0f}/s" for name, values in rates.items())
            print(f"round {round_number + 1}: {line}")
        for _, close in clients.values():
            close()
    result = {name: median(values) for name, values in rates.items()}
    print()
    for name, rate in result.items():
        print(f"{name:36s} {rate:8,.0f} requests/s  ({1e6 / rate:6.0f} µs per request)")
    raw, ours = result["raw httpx.Client"], result["pipeline (IntercomClient.request)"]
    full, official = result["pipeline + RetryPolicy + Pacer"], result["official SDK (python-intercom)"]
    print(f"pipeline + RetryPolicy + Pacer vs raw httpx: {full / raw:.2f}x; vs SDK: {full / official:.2f}x")
    print(
        f"RATIO pipeline/raw_httpx = {ours / raw:.2f}x (goal >= 0.85); "
        f"pipeline/official_sdk = {ours / official:.2f}x (goal >= 1.3)"
    )


if __name__ == "__main__":
    main()
