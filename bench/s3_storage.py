"""An S3-compatible server for the benchmarks: moto's server in its own process, and prefect-aws blocks on it.

moto answers in a few milliseconds; real S3 takes tens. `SlowS3Bucket` is prefect-aws's `S3Bucket`
whose every S3 request first waits a delay drawn uniformly from a range (writes 30-80 ms by default),
in the request's thread, so the ledger sees object-store latency per round trip. Needs
`pip install 'moto[server]' prefect-aws`. Binds 127.0.0.1 only; credentials `testing`/`testing`,
region `us-east-1` (moto's).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect_aws import AwsCredentials
from prefect_aws.s3 import S3Bucket

HOST = "127.0.0.1"
REGION = "us-east-1"
_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


class SlowS3Bucket(S3Bucket):
    """`S3Bucket` whose every S3 request (a GET or HEAD: `read_delay`; a PUT: `write_delay`) waits first.

    The wait is a uniform draw, slept in the request's own thread by a botocore `before-send` hook on
    the block's client, so it holds a thread and a connection as a real round trip does, and it is
    paid per request: s3transfer's `aread_path` (a HEAD and a GET) twice, one `get_object` once.
    """

    _block_type_slug = "bench-slow-s3-bucket"
    read_delay: tuple[float, float] = (0.0, 0.0)
    write_delay: tuple[float, float] = (0.03, 0.08)

    def _get_s3_client(self) -> Any:
        parameters = self.credentials.aws_client_parameters.get_params_override()
        key = (str(parameters.get("endpoint_url")), self.read_delay, self.write_delay)
        if key not in _SLOW_CLIENTS:  # one client per server and delays, as prefect-aws caches its own
            client = self.credentials.get_boto3_session().client("s3", **parameters)
            client.meta.events.register("before-send.s3", self._wait)
            _SLOW_CLIENTS[key] = client
        return _SLOW_CLIENTS[key]

    def _wait(self, request: Any, **_: Any) -> None:
        low, high = self.write_delay if request.method in ("PUT", "POST", "DELETE") else self.read_delay
        if high > 0:
            time.sleep(random.uniform(low, high))


_SLOW_CLIENTS: dict[tuple[str, tuple[float, float], tuple[float, float]], Any] = {}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(bucket: str = "ledger") -> Iterator[str]:
    """moto's S3 server in a child process with `bucket` created; yields its endpoint URL."""
    os.environ.update(_ENV)
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **_ENV},
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s3_client(url).create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_client(url: str) -> Any:
    """A boto3 S3 client on the server at `url`."""
    import boto3

    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def s3_block(
    url: str,
    bucket: str = "ledger",
    folder: str = "results",
    *,
    write_delay: tuple[float, float] = (0.0, 0.0),
    read_delay: tuple[float, float] = (0.0, 0.0),
) -> S3Bucket:
    """A prefect-aws block on the server at `url` (a `SlowS3Bucket` when a delay is given)."""
    credentials = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
        aws_client_parameters={"endpoint_url": url},
    )
    if max(write_delay) > 0 or max(read_delay) > 0:
        return SlowS3Bucket(
            bucket_name=bucket,
            bucket_folder=folder,
            credentials=credentials,
            write_delay=write_delay,
            read_delay=read_delay,
        )
    return S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=credentials)
