"""A local stand-in for Intercom's `POST /phone_call_redirects`, over real HTTP.

It follows the documented contract: `401` with an `error.list` without the right bearer
token, `400 invalid_phone_number` for a phone that is not E.164, and the documented `200`
answer otherwise. It records every request it receives, so tests can count exactly what a
real person would have been texted.

Run it:

    python -m prefect_intercom.sandbox --host 127.0.0.1 --port 8765 --token sandbox-token

or start it from Python on a free port:

    with Sandbox() as sandbox:
        credentials = IntercomCredentials(access_token=sandbox.token, base_url=sandbox.url)

Numbers that trigger the documented failures (no SMS is "sent" for them):

- `+15005550001`: `400 sms_failed` ("SMS was not sent due to an unknown error").
- `+15005550002`: `422` with an `error_key`.

`GET /data_attributes` lists the workspace's contact attributes: two standard ones and the
custom ones of `data_attributes` (`{"vip": "boolean"}`, flag `--data-attribute vip=boolean`);
`data_attributes_status=403` answers as Intercom does to a token without the scope.

Inspection endpoints (not part of Intercom's API): `GET /sandbox/requests` lists what was
received (Authorization redacted), `DELETE /sandbox/requests` forgets it, `GET /sandbox/reads`
lists the `GET /data_attributes` received (`Sandbox.reads`), `GET /sandbox/health`.

Rate limits, latency and faults (all optional `SandboxOptions` fields: `Sandbox(...)` keywords or CLI flags):

- `rate_limit` requests per `rate_limit_window` seconds (default: Intercom's 10,000 a minute,
  1667 per 10-second window), windows aligned on multiples of the window length. Every
  authenticated answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
  `X-RateLimit-Reset` (a UNIX time); the request over the limit gets `429` with an
  `error.list` whose code is `rate_limit_exceeded`. Unauthenticated answers carry none, as
  Intercom documents. `retry_after` adds a `Retry-After` header to 429s (Intercom sends none).
- `omit_rate_limit_headers`: the probability that an authenticated answer comes without the
  three headers (Intercom says some of its answers have none), drawn per request from `seed`.
- `keep_alive`: seconds an idle keep-alive connection stays open (5, uvicorn's default). A
  client that keeps idle connections just as long races the server closing them: a request
  sent on a connection as it closes gets no answer (an `unknown` outcome).
- `latency` seconds before every answer; a range (`latency=(0.15, 0.4)`, or `latency=0.15`
  with `latency_max=0.4`) draws each answer's latency uniformly from it, from `seed`.
- `faults`, a probability per kind, drawn per request from `seed`, the phone and how many
  times that phone arrived (so a run is reproducible whatever the concurrency):

  | kind | answer | the SMS |
  | --- | --- | --- |
  | `429` | 429 `rate_limit_exceeded` (the window's real headers) | not sent |
  | `500`, `503` | that status with a JSON `error.list` | sent with probability `fault_effect` |
  | `502`, `html` | 502 / 503 with an HTML page from a "proxy" | sent with probability `fault_effect` |
  | `reset` | the TCP connection is reset before any answer | sent with probability `fault_effect` |
  | `slow` | the normal answer, `slow_seconds` late (past the client's timeout) | sent, as normal |
  | `empty` | the normal status with an empty body | sent, as normal |

  Each received request records its `fault` and whether the SMS went out (`delivered`);
  `Sandbox.accepted` lists exactly the SMS a real person would have received.

The package, one job per module: `options` (every option, once, with its help text), `state`
(the rate-limit window, the draws, what was received), `contract` (Intercom's documented
answers), `app` (the starlette application), `server` (`Sandbox` and the foreground server),
`cli` (the command line, derived from the options), `process` (the command line as a child process).
"""

try:  # the sandbox's own dependencies are an extra
    import starlette.applications  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as missing:
    raise ImportError(
        f"the Intercom sandbox needs starlette and uvicorn ({missing.name or missing} is missing): "
        "pip install 'prefect-intercom[sandbox]'",
        name=missing.name,
    ) from None

from prefect_intercom.sandbox.app import create_app
from prefect_intercom.sandbox.cli import main
from prefect_intercom.sandbox.contract import SMS_FAILS_PHONE, UNPROCESSABLE_PHONE
from prefect_intercom.sandbox.options import (
    DEFAULT_HOST,
    DEFAULT_KEEP_ALIVE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_LIMIT_WINDOW,
    DEFAULT_TOKEN,
    FAULT_KINDS,
    ResponseShape,
    SandboxOptions,
)
from prefect_intercom.sandbox.server import Sandbox
from prefect_intercom.sandbox.state import ReceivedRequest, SandboxState

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RATE_LIMIT_WINDOW",
    "DEFAULT_TOKEN",
    "FAULT_KINDS",
    "SMS_FAILS_PHONE",
    "UNPROCESSABLE_PHONE",
    "ReceivedRequest",
    "ResponseShape",
    "Sandbox",
    "SandboxOptions",
    "SandboxState",
    "create_app",
    "main",
]
