"""A local stand-in for Intercom's `POST /phone_call_redirects`, over real HTTP (docs/sandbox.md).

It answers as Intercom documents, can behave like Intercom under load (rate-limit windows,
latency, faults) and records every request it receives, so that tests count exactly what a real
person would have been texted: `with Sandbox() as sandbox: ...`, or
`python -m prefect_intercom.sandbox --port 8765`. One job per module: `state` (the options and
what a running sandbox knows), `app` (Intercom's documented answers and the starlette
application), `server` (`Sandbox` and the command line), `process` (the command line as a child
process).
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

from prefect_intercom.sandbox.app import SMS_FAILS_PHONE, UNPROCESSABLE_PHONE
from prefect_intercom.sandbox.server import Sandbox, main
from prefect_intercom.sandbox.state import DEFAULT_KEEP_ALIVE, FAULT_KINDS, SandboxState

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "FAULT_KINDS",
    "SMS_FAILS_PHONE",
    "UNPROCESSABLE_PHONE",
    "Sandbox",
    "SandboxState",
    "main",
]
