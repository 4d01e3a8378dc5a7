"""The ledger fails closed and reads O(1) objects: checksums, gaps, not-found signals, app scope, keyed digests."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_intercom.batch import ledger_format as fmt
from prefect_intercom.batch.ledger import SNAPSHOT_EVERY, BatchLedger, LedgerApp
from prefect_intercom.batch.ledger_secret import load_ledger_key
from prefect_intercom.batch.ledger_store import LedgerStore
from prefect_intercom.errors import LedgerError, LedgerLocationError
from prefect_intercom.outcomes import Outcome

APP = LedgerApp("https://api.intercom.io", "tok_A")

pytestmark = pytest.mark.usefixtures("prefect_server")


def phone(index: int) -> str:
    return f"+1415{index:07d}"


READS: list[str] = []


class CountingStorage(LocalFileSystem):
    """Local storage read through the block API (not the local fast path), counting reads."""

    async def aread_path(self, path: str) -> bytes:
        READS.append(path)
        resolved = Path(self._resolve_path(path))
        if not resolved.exists():
            raise FileNotFoundError(path)
        return resolved.read_bytes()

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await super().awrite_path(path, content)


async def crashed_run(storage: Any, key: str, sent: int, unknown: int = 0, app: LedgerApp = APP) -> BatchLedger:
    """A run that sent `sent` phones, announced `unknown` more, and died without closing."""
    ledger = await BatchLedger.open(key, storage, app=app)
    for index in range(sent + unknown):
        digest = ledger.digest(phone(index))
        ledger.first_seen(digest, index)
        await ledger.announce(index, digest)
        if index < sent:
            await ledger.complete(index, digest, Outcome.SENT)
    return ledger  # never closed: SIGKILL


async def test_a_rerun_sees_what_a_crashed_run_sent_and_announced(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    first = await crashed_run(storage, "k", sent=5, unknown=2)
    again = await BatchLedger.open("k", storage, app=APP)
    assert again.run == 1
    outcomes = [again.previous(again.digest(phone(i))) for i in range(8)]
    assert [o.outcome for o in outcomes[:7] if o] == [Outcome.SENT] * 5 + [Outcome.UNKNOWN] * 2
    assert outcomes[7] is None and first.records >= 7


async def test_a_missing_middle_record_stops_the_batch_naming_it(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    ledger = await crashed_run(storage, "gap", sent=30)
    Path(storage._resolve_path(ledger.paths.record(0, 3))).unlink()  # a lifecycle rule took record 3
    with pytest.raises(LedgerError, match="gap: record 3 of run 0 is missing"):
        await BatchLedger.open("gap", storage, app=APP)


async def test_a_flipped_bit_stops_the_batch(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    ledger = await crashed_run(storage, "flip", sent=10)
    path = Path(storage._resolve_path(ledger.paths.record(0, 9)))  # even the last record: writes are atomic here
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(LedgerError, match="record-00000009 is damaged"):
        await BatchLedger.open("flip", storage, app=APP)


async def test_an_unknown_word_with_a_valid_checksum_stops_the_batch(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    ledger = await crashed_run(storage, "word", sent=3)
    body = b'{"v":3,"kind":"record","run":0,"seq":1,"sending":[],"done":[["' + b"00" * 12 + b'","x"]]}'
    Path(storage._resolve_path(ledger.paths.record(0, 1))).write_bytes(fmt.seal(body))
    with pytest.raises(LedgerError, match="cannot read"):
        await BatchLedger.open("word", storage, app=APP)


async def test_a_record_copied_under_another_name_is_refused(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    ledger = await crashed_run(storage, "copy", sent=4)
    source = Path(storage._resolve_path(ledger.paths.record(0, 0)))
    Path(storage._resolve_path(ledger.paths.record(0, 2))).write_bytes(source.read_bytes())
    with pytest.raises(LedgerError, match="does not hold record 2 of run 0"):
        await BatchLedger.open("copy", storage, app=APP)


async def test_the_ledger_belongs_to_one_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    sandbox = LedgerApp("http://127.0.0.1:8090", "sandbox-token")
    rehearsal = await crashed_run(storage, "campaign", sent=3, app=sandbox)
    await rehearsal.close()
    real = await BatchLedger.open("campaign", storage, app=APP)  # a rehearsal never hides a real send
    assert real.run == 0 and real.previous(real.digest(phone(0))) is None
    await real.close()
    with pytest.raises(LedgerError, match="another access token"):  # another workspace in the same region
        await BatchLedger.open("campaign", storage, app=LedgerApp(APP.api_url, "tok_B"))
    monkeypatch.setenv("PREFECT_INTERCOM_LEDGER_ACCEPT_OTHER_TOKEN", "1")  # a rotated token of the same workspace
    rotated = await BatchLedger.open("campaign", storage, app=LedgerApp(APP.api_url, "tok_B"))
    assert rotated.run == 1


async def test_digests_are_useless_without_the_ledger_key(tmp_path: Path) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    ledger = await crashed_run(storage, "secret-key", sent=3)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    salt = hashlib.sha256(b"secret-key").digest()  # what a reader who knows the batch key could try
    for index in range(3):
        guess = hashlib.blake2b(phone(index).encode(), digest_size=12, key=salt).hexdigest().encode()
        assert guess not in written and phone(index).encode() not in written
        assert ledger.digest(phone(index)).hex().encode() in written


async def test_the_ledger_key_is_created_once_and_read_back_only_by_later_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret

    loads: list[str] = []
    load = Secret.aload.__func__  # type: ignore[attr-defined]

    async def counted(cls: type[Secret], name: str, **options: Any) -> Secret:
        loads.append(name)
        return await load(cls, name, **options)

    monkeypatch.setattr(Secret, "aload", classmethod(counted))
    created = await load_ledger_key("ledger-key-created-once")
    assert loads == ["ledger-key-created-once"]  # missing, then saved: its value is the key, not read back
    assert await load_ledger_key("ledger-key-created-once") == created  # a later run reads the same key
    assert len(loads) == 2


async def test_a_ledger_key_saved_by_another_run_meanwhile_is_the_one_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    first = await load_ledger_key("ledger-key-raced")
    load = Secret.aload.__func__  # type: ignore[attr-defined]
    missing_once: list[str] = []

    async def missing_first(cls: type[Secret], name: str, **options: Any) -> Secret:
        if not missing_once:  # this run looked before the other one's save landed
            missing_once.append(name)
            raise ValueError("Unable to find block document named ledger-key-raced")
        return await load(cls, name, **options)

    monkeypatch.setattr(Secret, "aload", classmethod(missing_first))
    assert await load_ledger_key("ledger-key-raced") == first


async def test_another_ledger_key_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalFileSystem(basepath=str(tmp_path))
    await crashed_run(storage, "rekeyed", sent=2)

    async def other_key() -> bytes:
        return b"\x01" * 32

    monkeypatch.setattr("prefect_intercom.batch.ledger.load_ledger_key", other_key)
    with pytest.raises(LedgerError, match="another ledger key"):
        await BatchLedger.open("rekeyed", storage, app=APP)


async def test_resuming_reads_a_snapshot_and_a_bounded_tail_whatever_the_length(tmp_path: Path) -> None:
    storage = CountingStorage(basepath=str(tmp_path))
    ledger = await BatchLedger.open("long", storage, app=APP, linger=0)
    count = SNAPSHOT_EVERY * 3
    for index in range(count):
        digest = ledger.digest(phone(index))
        ledger.first_seen(digest, index)
        await ledger.announce(index, digest)
        await ledger.complete(index, digest, Outcome.SENT)
    await ledger.close()
    assert ledger.records >= 2 * count
    READS.clear()
    again = await BatchLedger.open("long", storage, app=APP)
    assert all(again.previous(again.digest(phone(i))).outcome is Outcome.SENT for i in range(0, count, 97))
    assert again.previous_count == count
    # an older version's folder, claims, two head slots, the snapshot, the record after it, the claim read back
    assert len(READS) <= 1 + 8 + 2 + 1 + 1 + 1, READS


# --- the marker on the Prefect server: another disk than the ledger's ------------------------


async def test_a_rerun_reading_another_disk_than_the_ledgers_is_refused_naming_where_it_is(tmp_path: Path) -> None:
    machine_a, machine_b = LocalFileSystem(basepath=str(tmp_path / "a")), LocalFileSystem(basepath=str(tmp_path / "b"))
    await crashed_run(machine_a, "two-machines", sent=3)
    with pytest.raises(LedgerLocationError, match=r"1 earlier run\(s\).*holds 0.*last kept at [^ ]+:.*/a\b"):
        await BatchLedger.open("two-machines", machine_b, app=APP)  # a fresh container, another worker's disk
    again = await BatchLedger.open("two-machines", machine_a, app=APP)  # where the ledger is: it resumes
    assert again.run == 1 and again.previous(again.digest(phone(0))) is not None


class _FailingStore(LedgerStore):
    """A store whose writes fail after a while, like an object store that went away mid-batch."""

    local, atomic, where = False, True, "a store that went away"

    async def _read(self, key: str) -> bytes:
        raise FileNotFoundError(key)

    async def _write(self, key: str, content: bytes) -> None:
        await asyncio.sleep(0.05)
        raise OSError("the bucket is gone")


@pytest.mark.timeout(30)
async def test_an_announcement_queued_while_a_failing_record_is_written_fails_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = BatchLedger("k", _FailingStore(), scope="", digest_secret=b"s" * 32, linger=0)
    first = asyncio.create_task(ledger.announce(0, ledger.digest(phone(0))))
    await asyncio.sleep(0.01)  # the record announcing item 0 is being written
    second = asyncio.create_task(ledger.announce(1, ledger.digest(phone(1))))
    finished, _ = await asyncio.wait({first, second}, timeout=2)
    assert finished == {first, second}  # the second waits for no write that will never come
    for announced in (first, second):
        assert isinstance(announced.exception(), LedgerError)
    with pytest.raises(LedgerError):
        await ledger.close()
    assert "never retrieved" not in caplog.text


async def test_each_run_reads_the_marker_once_and_records_its_own_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import PrefectClient, get_client

    from prefect_intercom.batch.ledger_marker import marker_name

    reads: list[str] = []
    read = PrefectClient.read_variable_by_name

    async def counted(self: PrefectClient, name: str) -> Any:
        reads.append(name)
        return await read(self, name)

    monkeypatch.setattr(PrefectClient, "read_variable_by_name", counted)
    storage = LocalFileSystem(basepath=str(tmp_path))
    first = await BatchLedger.open("marked-once", storage, app=APP)
    await first.close()
    second = await BatchLedger.open("marked-once", storage, app=APP)
    await second.close()
    name = marker_name(second.folder)
    assert reads.count(name) == 2  # one read per run: the check's answer also says whether to create or update
    async with get_client() as client:
        marker = await read(client, name)
    assert marker is not None and marker.value["runs"] == 2


class _TimedStore(LedgerStore):
    """A store whose records take a while to write, noting when each write starts and ends."""

    local, atomic, where = True, True, "a slow disk"

    def __init__(self) -> None:
        self.writes: list[tuple[float, float]] = []
        self.objects: dict[str, bytes] = {}

    async def _read(self, key: str) -> bytes:
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key]

    async def _write(self, key: str, content: bytes) -> None:
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.002)
        self.objects[key] = content
        if "/record-" in key:
            self.writes.append((started, asyncio.get_running_loop().time()))


async def test_one_writer_groups_announcements_one_write_in_flight_at_most_one_a_linger() -> None:
    store = _TimedStore()
    ledger = BatchLedger("k", store, scope="", digest_secret=b"s" * 32, linger=0.004)

    async def item(index: int) -> None:
        digest = ledger.digest(phone(index))
        await ledger.announce(index, digest)
        ledger.record_outcome(digest, Outcome.SENT)

    for wave in range(20):  # 20 waves of 50 items announced at once: a batch at full speed
        await asyncio.gather(*(item(wave * 50 + n) for n in range(50)))
    await ledger.close()
    starts = [started for started, _ in store.writes]
    assert len(store.writes) <= 45, len(store.writes)  # 2,000 announcements and outcomes: grouped, not one each
    for (_, ended), started in zip(store.writes, starts[1:], strict=False):
        assert started >= ended  # one write in flight
    # At most one write a linger: the writer decides a linger apart; a write's start may lag its decision
    # (a busy loop), so single gaps may be shorter, never the whole span.
    assert starts[-1] - starts[0] >= (len(starts) - 1) * 0.004 * 0.9, starts


@pytest.mark.parametrize(
    ("latency", "linger"),
    [(0.05, 0.001), (0.01, 0.001), (0.1, 0.0015), (0.2, 0.003), (0.4, 0.005), (30.0, 0.005)],
)
def test_the_linger_is_a_share_of_the_latency_within_one_to_five_ms(latency: float, linger: float) -> None:
    ledger = BatchLedger("k", _TimedStore(), scope="", digest_secret=b"s" * 32)
    assert ledger.linger == 0.001  # until a latency is known
    ledger.fit_linger(latency)
    assert ledger.linger == pytest.approx(linger)
    given = BatchLedger("k", _TimedStore(), scope="", digest_secret=b"s" * 32, linger=0.02)
    given.fit_linger(latency)
    assert given.linger == 0.02  # a linger given is kept
