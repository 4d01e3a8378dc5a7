"""Where the batch ledger's objects are read and written: local disk, or any Prefect file system block.

"Missing" is the storage's own signal, never words; a refusal fails closed (docs/batches.md, `ledger_store`).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.to_thread
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from prefect_intercom.errors import LedgerAccessDeniedError, LedgerError, causes

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchBucket"})
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", "401", "AllAccessDisabled"})
_LARGE = 1 << 16  # bytes: local reads and writes above this go to a worker thread


class LedgerStore:
    """What the ledger needs of a storage: read (`None` when missing) and write whole objects.

    Subclasses move the bytes (`_read`, `_write`); errors are told apart here, the same for all.

    Attributes:
        local: The objects are on this machine's disk.
        atomic: A write is seen whole or not at all (never torn by a crash).
        where: Where the objects are, for people.
    """

    local: bool
    atomic: bool
    where: str

    async def read(self, key: str) -> bytes | None:
        """The object's bytes, or `None` when the storage says it does not exist."""
        try:
            return await self._read(key)
        except Exception as error:
            if classify(error) == "missing":
                return None
            why = f"the batch ledger object {key} cannot be read from {self.where} ({type(error).__name__})"
            self._refuse(error, key, "read", f"{why}; nothing more is sent")

    async def write(self, key: str, content: bytes) -> None:
        """Write the object whole (replacing it)."""
        try:
            await self._write(key, content)
        except Exception as error:
            why = f"could not write the batch ledger object {key} to {self.where}: {type(error).__name__}"
            self._refuse(error, key, "write", why)

    async def names(self, prefix: str, after: str) -> list[str] | None:
        """The names under `prefix` that sort after `after`, in order, or `None` when this storage cannot list.

        Raises:
            LedgerError: The storage refused or failed to list.
        """
        try:
            return await self._names(prefix, after)
        except Exception as error:
            if classify(error) == "missing":  # no bucket yet: nothing was written
                return []
            why = f"the batch ledger objects {prefix}* cannot be listed in {self.where} ({type(error).__name__})"
            self._refuse(error, prefix, "list", f"{why}; nothing more is sent")

    def _refuse(self, error: Exception, key: str, action: str, failed: str) -> NoReturn:
        """Raise `LedgerError(failed)` for a failed `action` on `key`; for a refusal, which access to grant."""
        if classify(error) != "denied":
            raise LedgerError(failed) from error
        hint = (
            "S3 answers 403, not 404, for a missing object when the credentials lack s3:ListBucket on the bucket: "
            "grant s3:ListBucket on the bucket and s3:GetObject and s3:PutObject on the ledger's prefix"
            if isinstance(getattr(error, "response", None), dict)  # botocore's ClientError: S3 or S3-compatible
            else "grant the storage credentials read and write access to the ledger's folder"
        )
        raise LedgerAccessDeniedError(
            f"The ledger storage ({self.where}) refused to {action} {key} ({type(error).__name__}); nothing more is "
            f"sent, since what earlier runs sent cannot be checked. {hint}."
        ) from None

    async def _names(self, prefix: str, after: str) -> list[str] | None:
        return None

    async def _read(self, key: str) -> bytes:
        raise NotImplementedError

    async def _write(self, key: str, content: bytes) -> None:
        raise NotImplementedError


def store_for(storage: WritableFileSystem) -> LedgerStore:
    """The ledger store over a Prefect file system block (local disk and S3 read directly)."""
    if isinstance(storage, LocalFileSystem) and type(storage).aread_path is LocalFileSystem.aread_path:
        return LocalStore(storage)
    if _plain_s3_bucket(storage):
        return S3Store(storage)
    return BlockStore(storage)


def is_local(storage: WritableFileSystem) -> bool:
    """Whether the block keeps its files on this machine's disk."""
    if isinstance(storage, LocalFileSystem):
        return True
    if isinstance(storage, RemoteFileSystem):
        return str(storage.basepath).split("://", 1)[0].lower() in ("file", "local", str(storage.basepath))
    return False


def describe(storage: WritableFileSystem) -> str:
    """Where the block keeps its files, for people: a path, a URL or the block's type and name."""
    if isinstance(storage, LocalFileSystem):
        return str(Path(storage.basepath or ".").expanduser().resolve())
    if isinstance(storage, RemoteFileSystem):
        return str(storage.basepath)
    for field in ("bucket_name", "bucket", "container_name"):
        value = getattr(storage, field, None)
        if value:
            folder = getattr(storage, "bucket_folder", "") or ""
            return f"{type(storage).__name__} {value}/{folder}".rstrip("/")
    name = getattr(storage, "_block_document_name", None)
    return f"{type(storage).__name__} {name}" if name else type(storage).__name__


class LocalStore(LedgerStore):
    """Ledger objects as files under a `LocalFileSystem`'s base path, each written by rename."""

    local = True
    atomic = True

    def __init__(self, storage: LocalFileSystem) -> None:
        self._storage = storage
        self.where = describe(storage)
        self._folders: dict[str, Path] = {}  # a key's folder, resolved and made once (not per record)

    async def _read(self, key: str) -> bytes:
        path = Path(self._storage._resolve_path(key))
        if path.stat().st_size > _LARGE:
            return await asyncio.to_thread(path.read_bytes)
        return path.read_bytes()

    async def _write(self, key: str, content: bytes) -> None:
        if type(self._storage).awrite_path is not LocalFileSystem.awrite_path:  # a subclass that writes its own way
            await self._storage.awrite_path(key, content)
        elif len(content) > _LARGE:
            await asyncio.to_thread(_write_by_rename, self._path(key), content)
        else:
            _write_by_rename(self._path(key), content)

    def _path(self, key: str) -> Path:
        """Where `key` is written: its folder resolved inside the base path (as `LocalFileSystem` does) once."""
        folder, _, name = key.rpartition("/")
        resolved = self._folders.get(folder)
        if resolved is None:
            resolved = Path(self._storage._resolve_path(folder))
            resolved.mkdir(parents=True, exist_ok=True)
            self._folders[folder] = resolved
        return resolved / name


def _write_by_rename(path: Path, content: bytes) -> None:
    """Write `content` to a temporary file beside `path`, then rename it over `path` (seen whole or not at all).

    `os` calls, not `pathlib`'s: a record is written every few milliseconds in the batch's event loop.
    """
    target = str(path)
    temporary = f"{os.path.dirname(target)}/.{os.path.basename(target)}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)
    os.replace(temporary, target)


class BlockStore(LedgerStore):
    """Ledger objects through a file system block's `aread_path`/`awrite_path` (S3, GCS, Azure, SMB...)."""

    def __init__(self, storage: WritableFileSystem) -> None:
        self._storage = storage
        self.local = is_local(storage)
        self.atomic = not self.local and type(storage).__name__ != "SMB"  # object stores replace whole objects
        self.where = describe(storage)

    async def _read(self, key: str) -> bytes:
        return await _call(self._storage, "read_path", key)

    async def _write(self, key: str, content: bytes) -> None:
        await _call(self._storage, "write_path", key, content)


class S3Store(BlockStore):
    """Ledger objects in a prefect-aws `S3Bucket`: one GET or PUT each, through the block's own boto client.

    The block's `aread_path` goes through s3transfer (a HEAD and a GET a read, a transfer manager a
    call): about three times the client CPU of `get_object`, and twice the round trips. Calls run in
    worker threads, no more at once than the client's connection pool holds.
    """

    def __init__(self, storage: Any) -> None:
        super().__init__(storage)
        self._client = storage._get_s3_client()
        self._bucket = storage.bucket_name
        self._limiter: anyio.CapacityLimiter | None = None

    async def _read(self, key: str) -> bytes:
        path = self._storage._resolve_path(key)
        return await self._in_thread(lambda: self._client.get_object(Bucket=self._bucket, Key=path)["Body"].read())

    async def _write(self, key: str, content: bytes) -> None:
        path = self._storage._resolve_path(key)
        await self._in_thread(lambda: self._client.put_object(Bucket=self._bucket, Key=path, Body=content))

    async def _names(self, prefix: str, after: str) -> list[str]:
        """One LIST request a thousand names (S3's own answer to what exists; needs `s3:ListBucket`)."""
        resolved = self._storage._resolve_path(prefix) + ("/" if prefix.endswith("/") else "")  # Path drops it
        keys = await self._in_thread(self._list, resolved, self._storage._resolve_path(after))
        return [prefix + key[len(resolved) :] for key in keys]

    def _list(self, prefix: str, after: str) -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix, StartAfter=after
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    async def _in_thread(self, call: Callable[..., Any], *arguments: Any) -> Any:
        if self._limiter is None:  # made in the running loop; as many threads as the client has connections
            self._limiter = anyio.CapacityLimiter(getattr(self._client.meta.config, "max_pool_connections", 0) or 10)
        return await anyio.to_thread.run_sync(call, *arguments, limiter=self._limiter)


def _plain_s3_bucket(storage: WritableFileSystem) -> bool:
    """Whether the block is prefect-aws's `S3Bucket` reading and writing as shipped (no override to respect)."""
    for cls in type(storage).__mro__:
        if cls.__name__ == "S3Bucket" and cls.__module__.startswith("prefect_aws"):
            shipped = all(getattr(type(storage), name) is getattr(cls, name) for name in ("aread_path", "awrite_path"))
            return shipped and hasattr(cls, "_get_s3_client") and hasattr(cls, "_resolve_path")
    return False


def classify(error: BaseException) -> str | None:
    """`"missing"`, `"denied"` or `None`, from the storage's own signal anywhere in the exception's chain."""
    for link in causes(error):
        if isinstance(link, FileNotFoundError):
            return "missing"
        if isinstance(link, PermissionError):
            return "denied"
        status = _status(link)
        if status == 404:
            return "missing"
        if status in (401, 403):
            return "denied"
    return None


def _status(error: BaseException) -> int | str | None:
    """The HTTP status or error code a storage client attached to its exception (botocore, google, azure)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore's ClientError
        code = str((response.get("Error") or {}).get("Code", ""))
        if code in _MISSING_CODES:
            return 404
        if code in _DENIED_CODES:
            return 403
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    for attribute in ("status_code", "code", "status"):  # azure-core, google-api-core, aiohttp
        value = getattr(error, attribute, None)
        if isinstance(value, int) and 100 <= value < 600:
            return int(value)
    return None


async def _call(storage: WritableFileSystem, method: str, *args: Any) -> Any:
    """`a<method>` where the block has it (Prefect's own and prefect-aws's blocks), else `<method>`."""
    asynchronous = getattr(storage, f"a{method}", None)
    result = asynchronous(*args) if asynchronous is not None else getattr(storage, method)(*args)
    return await result if inspect.isawaitable(result) else result
