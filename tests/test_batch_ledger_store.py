"""The ledger's storage (`prefect_intercom.batch.ledger_store`): "missing" is the storage's signal, never words."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
from prefect_intercom.batch.ledger_store import BlockStore, LocalStore, classify
from prefect_intercom.errors import LedgerAccessDeniedError, LedgerError

APP = LedgerApp("https://api.intercom.io", "tok_A")


class ClientError(Exception):
    """Shaped like botocore's: the verdict is in `response`, never in the words."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"An error occurred ({code}) when calling GetObject: record-00000404 not found")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_not_found_is_the_storage_signal_never_words() -> None:
    assert classify(FileNotFoundError("x")) == "missing"
    assert classify(ClientError("NoSuchKey", 404)) == "missing"
    assert classify(ClientError("AccessDenied", 403)) == "denied"
    assert classify(ValueError("record-00000404 not found: 404 does not exist")) is None
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ClientError("404", 404)
    assert classify(wrapped) == "missing"


class DeniedStorage(LocalFileSystem):
    """An S3 policy without s3:ListBucket: a missing object answers 403."""

    async def aread_path(self, path: str) -> bytes:
        raise ClientError("AccessDenied", 403)


async def test_a_403_fails_closed_naming_the_permission(tmp_path: Path) -> None:
    store = BlockStore(DeniedStorage(basepath=str(tmp_path)))
    with pytest.raises(LedgerAccessDeniedError, match="s3:ListBucket"):
        await store.read("prefect-intercom-ledger/x/run-00000/claim")


class WordyStorage(LocalFileSystem):
    """Read errors whose words say 404 / not found, but which are not the storage's not-found signal."""

    async def aread_path(self, path: str) -> bytes:
        raise ValueError(f"proxy error 404 not found while reading {path}")


@pytest.mark.usefixtures("prefect_server")
async def test_an_error_that_only_says_404_is_not_a_missing_record(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="cannot be read"):
        await BatchLedger.open("wordy", WordyStorage(basepath=str(tmp_path)), app=APP)


async def test_the_local_store_writes_by_rename_and_reads_back_none_when_missing(tmp_path: Path) -> None:
    store = LocalStore(LocalFileSystem(basepath=str(tmp_path)))
    assert await store.read("folder/run-00000/claim") is None
    await store.write("folder/run-00000/claim", b"x" * 70_000)  # large: written in a worker thread
    assert await store.read("folder/run-00000/claim") == b"x" * 70_000
    assert sorted(path.name for path in (tmp_path / "folder" / "run-00000").iterdir()) == ["claim"]  # no temporary
    assert store.local and store.atomic and store.where == str(tmp_path.resolve())
