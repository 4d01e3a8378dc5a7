"""The installed version of prefect-intercom, in a module of its own that imports nothing of the package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prefect-intercom")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
