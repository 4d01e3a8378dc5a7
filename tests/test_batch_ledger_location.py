"""Where the ledger is (`prefect_intercom.batch.ledger_location`), said before the first send."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

pytestmark = pytest.mark.usefixtures("prefect_server")


def phone(index: int) -> str:
    return f"+1415{index:07d}"


async def test_local_disk_on_a_container_pool_is_refused_unless_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_intercom.batch import ledger_location

    async def pool(kind: str | None) -> str | None:
        return kind

    for kind in ("kubernetes", "docker", "ecs", "cloud-run", "some-new-type"):
        monkeypatch.setattr(ledger_location, "work_pool_type", lambda kind=kind: pool(kind))
        with pytest.raises(ledger_location.LedgerLocationError, match=r"share no disk.*ledger_storage="):
            await ledger_location.ledger_location_note(local=True, where="/root/.prefect/storage", chosen=False)
        assert "/root/.prefect/storage" in await ledger_location.ledger_location_note(
            local=True, where="/root/.prefect/storage", chosen=True
        )
        assert await ledger_location.ledger_location_note(local=False, where="s3", chosen=False) is None
    for kind in ("process", None):  # one host: proceed, and say where the ledger is
        monkeypatch.setattr(ledger_location, "work_pool_type", lambda kind=kind: pool(kind))
        note = await ledger_location.ledger_location_note(local=True, where="/srv/ledger", chosen=False)
        assert note is not None and "/srv/ledger" in note and "another machine" in note


async def test_the_default_local_storage_is_not_chosen_but_an_argument_is(tmp_path: Path) -> None:
    from prefect_intercom.batch.ledger_location import storage_was_chosen

    assert await storage_was_chosen(None) is False
    assert await storage_was_chosen(LocalFileSystem(basepath=str(tmp_path))) is True


async def test_a_batch_with_a_local_ledger_warns_once_in_the_logs_and_the_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect_intercom import IntercomCredentials
    from prefect_intercom.batch import asend_batch
    from prefect_intercom.sandbox import Sandbox

    with Sandbox(token="tok_A") as sandbox:
        credentials = IntercomCredentials(access_token="tok_A", base_url=sandbox.url)
        async with credentials.get_client() as client:
            report = await asend_batch(
                client,
                [{"phone": phone(i)} for i in range(3)],
                batch_key="where",
                lock=False,
                ledger_storage=LocalFileSystem(basepath=str(tmp_path)),
            )
    warnings = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "ledger is on local" in r.getMessage()
    ]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0]
    assert "another machine" in report.summary_markdown() and report.counts["sent"] == 3
