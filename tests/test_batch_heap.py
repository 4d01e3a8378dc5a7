"""The batch keeps the cyclic collector off the objects that existed before it (batch/heap.py)."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from prefect_intercom.batch import heap
from prefect_intercom.batch.heap import YOUNG_THRESHOLD, frozen_heap


@pytest.fixture(autouse=True)
def _no_freeze_left() -> None:
    # A batch of an earlier test may still be ending in a thread of this process (xdist worker): wait for it.
    deadline = time.monotonic() + 30
    while heap._holders and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heap._holders == 0, "a batch of an earlier test never left frozen_heap"
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_objects_from_before_are_skipped_inside_and_collected_as_usual_after() -> None:
    before = [["made before the batch"]]
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert not any(found is before for found in gc.get_objects())  # frozen: no collection walks it
    assert gc.get_freeze_count() == 0
    assert any(found is before for found in gc.get_objects())


def test_garbage_made_during_the_batch_is_still_collected() -> None:
    with frozen_heap():
        cycle = _Node()
        cycle.itself = cycle
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert alive() is None


def test_batches_at_once_share_one_freeze_and_the_last_lifts_it() -> None:
    # Frozen objects that die (other threads of a Prefect process free some) leave the count: it never grows.
    first, second = frozen_heap(), frozen_heap()
    first.__enter__()
    try:
        frozen = gc.get_freeze_count()
        second.__enter__()
        try:
            assert 0 < gc.get_freeze_count() <= frozen  # the second batch froze nothing more
        finally:
            first.__exit__(None, None, None)
        assert 0 < gc.get_freeze_count() <= frozen  # still frozen: the second batch runs
    finally:
        second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_by_someone_else_stays_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() == frozen


def test_the_freeze_is_lifted_when_the_batch_fails() -> None:
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the batch failed")
    assert gc.get_freeze_count() == 0


def test_threads_entering_and_leaving_leave_no_freeze_behind() -> None:
    def batch() -> None:
        for _ in range(200):
            with frozen_heap():
                pass

    threads = [threading.Thread(target=batch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.get_freeze_count() == 0


class _Node:
    """An object that can be in a reference cycle and weakly referenced."""

    itself: _Node


def test_young_collections_run_further_apart_inside_and_the_thresholds_come_back_after() -> None:
    gc.set_threshold(700, 10, 10)
    with frozen_heap():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        with frozen_heap():  # a second batch at once: the same
            assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the batch failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_cycles_made_during_the_batch_are_collected_without_an_explicit_collection() -> None:
    gc.set_threshold(700, 10, 10)
    with frozen_heap():
        cycle = _Node()
        cycle.itself = cycle
        alive = weakref.ref(cycle)
        del cycle
        kept = [[] for _ in range(YOUNG_THRESHOLD * 3)]  # allocations: the collector runs on its own
        assert alive() is None
        del kept


def test_thresholds_someone_else_chose_are_left_as_they_are() -> None:
    gc.set_threshold(0)  # the collector disabled: not turned on
    with frozen_heap():
        assert gc.get_threshold()[0] == 0
    gc.set_threshold(50_000, 10, 10)  # already further apart: kept
    with frozen_heap():
        assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(700, 10, 10)
    with frozen_heap():
        gc.set_threshold(900, 5, 5)  # changed meanwhile by the user's code: theirs stays
    assert gc.get_threshold() == (900, 5, 5)
