"""The occurrence counter (`prefect_intercom.idempotency`); the cache policy end to end: tests/test_flow_retries.py."""

from __future__ import annotations

import threading
import uuid

from prefect_intercom.idempotency import OccurrenceCounter


def test_occurrence_numbers_are_unique_across_threads_and_restart_with_each_attempt() -> None:
    counter, flow_run_id, numbers = OccurrenceCounter(), uuid.uuid4(), []
    lock = threading.Lock()

    def call_many() -> None:
        mine = [counter.number(flow_run_id, 1, "same call", uuid.uuid4()) for _ in range(50)]
        with lock:
            numbers.extend(mine)

    threads = [threading.Thread(target=call_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(numbers) == list(range(1, 401))
    assert counter.number(flow_run_id, 2, "same call", uuid.uuid4()) == 1


def test_a_task_run_keeps_its_occurrence_number_when_its_key_is_computed_again() -> None:
    counter, flow_run_id, task_run_id = OccurrenceCounter(), uuid.uuid4(), uuid.uuid4()

    first = counter.number(flow_run_id, 1, "same call", task_run_id)

    assert counter.number(flow_run_id, 1, "same call", task_run_id) == first == 1
    assert counter.number(flow_run_id, 1, "same call", uuid.uuid4()) == 2


def test_without_a_task_run_every_call_is_a_new_occurrence_and_old_attempts_are_forgotten() -> None:
    counter, flow_run_id = OccurrenceCounter(max_attempts=2), uuid.uuid4()
    assert [counter.number(flow_run_id, 1, "batch") for _ in range(3)] == [1, 2, 3]
    assert counter.number(flow_run_id, 1, "another call") == 1  # counted apart
    assert counter.number(flow_run_id, 2, "batch") == 1  # a new attempt starts again
    others = [uuid.uuid4() for _ in range(2)]
    for other in others:
        counter.number(other, 1, "batch")
    assert len(counter._attempts) == 2  # the oldest attempts are forgotten first
    assert counter.number(others[0], 1, "batch") == 2
