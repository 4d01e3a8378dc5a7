"""The sandbox as its own process; it lives in `prefect_intercom.sandbox.process` (kept importable here)."""

from prefect_intercom.sandbox.process import SandboxProcess, sandbox_process

__all__ = ["SandboxProcess", "sandbox_process"]
