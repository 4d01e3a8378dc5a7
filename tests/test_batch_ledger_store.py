"""The ledger's storage (`prefect_intercom.batch.ledger_store`): "missing" is the storage's signal, never words."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom.batch.ledger import BatchLedger, LedgerApp
from prefect_intercom.batch.ledger_store import BlockStore, LocalStore, S3Store, classify, store_for
from prefect_intercom.errors import LedgerAccessDeniedError, LedgerError
from prefect_intercom.outcomes import Outcome

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


async def test_a_local_ledger_folder_deleted_mid_run_fails_closed_never_made_again(tmp_path: Path) -> None:
    store = LocalStore(LocalFileSystem(basepath=str(tmp_path)))
    ledger = BatchLedger("k", store, scope="", digest_secret=b"s" * 32, linger=0)
    await ledger.announce(0, ledger.digest("+14155550100"))
    shutil.rmtree(tmp_path / ledger.folder)  # a clean-up job, a disk swapped under the run
    with pytest.raises(LedgerError, match="FileNotFoundError"):  # a fresh folder would hold a run with a gap
        await ledger.announce(1, ledger.digest("+14155550101"))
    assert not (tmp_path / ledger.folder).exists()


# --- S3 (prefect-aws's S3Bucket, on moto's in-process mock) ---------------------------------


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    """An `S3Bucket` block on moto's mock, and the S3 operations its client calls."""
    moto = pytest.importorskip("moto")
    s3 = pytest.importorskip("prefect_aws.s3")
    from prefect_aws import AwsCredentials

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with moto.mock_aws():
        credentials = AwsCredentials(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        block = s3.S3Bucket(bucket_name="ledger", bucket_folder="results", credentials=credentials)
        client = block._get_s3_client()
        client.create_bucket(Bucket="ledger")
        calls: list[str] = []

        def count(model: Any, **_: Any) -> None:
            calls.append(model.name)

        client.meta.events.register("before-call.s3", count)
        try:
            yield block, calls
        finally:
            client.meta.events.unregister("before-call.s3", count)


async def test_an_s3_bucket_is_read_with_one_get_and_written_with_one_put(s3_bucket: tuple[Any, list[str]]) -> None:
    block, calls = s3_bucket
    store = store_for(block)
    assert isinstance(store, S3Store) and store.atomic and not store.local
    await store.write("folder/run-00000/claim", b"claimed")
    assert await store.read("folder/run-00000/claim") == b"claimed"
    assert await store.read("folder/run-00000/record-00000000") is None  # NoSuchKey: S3's own signal
    # s3transfer (the block's aread_path) asks HeadObject before each GetObject, and a transfer manager each call
    assert calls == ["PutObject", "GetObject", "GetObject"]
    assert await store.names("folder/run-00000/", "folder/run-00000/") == ["folder/run-00000/claim"]


async def test_an_overridden_s3_bucket_is_read_through_its_own_methods(s3_bucket: tuple[Any, list[str]]) -> None:
    block, _ = s3_bucket

    class Wrapped(type(block)):  # type: ignore[misc]
        async def aread_path(self, path: str) -> bytes:
            return b"wrapped " + await super().aread_path(path)

    store = store_for(Wrapped(bucket_name="ledger", bucket_folder="results", credentials=block.credentials))
    assert type(store) is BlockStore
    await store.write("folder/x", b"x")
    assert await store.read("folder/x") == b"wrapped x"


async def _sent(ledger: BatchLedger, items: int) -> BatchLedger:
    """`ledger` after `items` phones announced and completed as sent (never closed: as at a SIGKILL)."""
    for index in range(items):
        digest = ledger.digest(f"+1415555{index:04d}")
        ledger.first_seen(digest, index)
        await ledger.announce(index, digest)
        await ledger.complete(index, digest, Outcome.SENT)
    return ledger


@pytest.mark.usefixtures("prefect_server")
async def test_a_crashed_run_in_s3_is_listed_and_only_its_records_read(s3_bucket: tuple[Any, list[str]]) -> None:
    block, calls = s3_bucket
    ledger = await _sent(await BatchLedger.open("listed", block, app=APP, linger=0), 10)
    records = ledger.records  # never closed: SIGKILL
    calls.clear()
    again = await BatchLedger.open("listed", block, app=APP)
    assert again.previous_count == 10
    assert calls.count("ListObjectsV2") == 1
    # an older version's folder, claims (8 at once), two head slots, each record once, the claim read back;
    # probing read a whole window of missing records past the end
    assert calls.count("GetObject") == 1 + 8 + 2 + records + 1, calls


@pytest.mark.usefixtures("prefect_server")
async def test_a_gap_far_from_the_end_of_a_run_in_s3_fails_closed(s3_bucket: tuple[Any, list[str]]) -> None:
    block, _ = s3_bucket
    ledger = await _sent(await BatchLedger.open("far-gap", block, app=APP, linger=0), 150)
    assert ledger.records == 300 and ledger._snapshot_at[0] < 70  # one snapshot early on: a long tail
    client, folder = block._get_s3_client(), block._resolve_path(ledger.folder)
    for record in range(70, 231):  # more than two reading windows deleted (a lifecycle rule)
        client.delete_object(Bucket="ledger", Key=f"{folder}/run-00000/record-{record:08d}")
    with pytest.raises(LedgerError, match="gap: record 70 of run 0 is missing while record 231 exists"):
        await BatchLedger.open("far-gap", block, app=APP)
