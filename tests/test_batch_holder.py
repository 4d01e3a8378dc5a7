"""The lease holder's record (`prefect_intercom.batch.holder`).

Take-overs on a Prefect server: tests/test_batch_lease_server.py.
"""

from __future__ import annotations

import uuid

import pytest

from prefect_intercom.batch.holder import Holder


def test_a_record_holds_only_ids_and_reads_back() -> None:
    holder = Holder(uuid.uuid4(), uuid.uuid4(), 2, uuid.uuid4())
    value = holder.value()
    assert set(value) == {"limit_id", "flow_run_id", "run_count", "task_run_id"}
    assert Holder.from_value(value) == holder
    assert Holder.from_value({**value, "task_run_id": None}) == Holder(holder.limit_id, holder.flow_run_id, 2)


@pytest.mark.parametrize("value", [None, "text", {}, {"limit_id": "x", "flow_run_id": "y", "run_count": 1}])
def test_a_value_that_is_not_a_record_reads_as_none(value: object) -> None:
    assert Holder.from_value(value) is None
