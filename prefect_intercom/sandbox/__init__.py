"""A local stand-in for Intercom's `POST /phone_call_redirects`, over real HTTP (docs/sandbox.md).

It answers as Intercom documents, behaves like Intercom under load and records what it receives:
`state` (options, what a running sandbox knows), `app` (the answers), `server` (`Sandbox`, the
command line), `process` (the command line as a child process).
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
