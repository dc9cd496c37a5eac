"""The cycle collector's pauses: nested and overlapping across threads, it comes back on only
when the last ends, and only if it was on; settling after a load freezes what the load built."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from uptimewatch.gcpause import no_cycle_collection, paused, promote, promote_every, settle_after_load


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_nested_pauses_resume_the_collector_only_at_the_end() -> None:
    with no_cycle_collection():
        assert not gc.isenabled()
        with no_cycle_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
        assert paused()
    assert gc.isenabled()
    assert not paused()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with no_cycle_collection():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads() -> None:
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with no_cycle_collection():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with no_cycle_collection():
        thread.start()
        assert inside.wait(10)
    # ours ended first: the other thread's pause still holds the collector off
    assert not gc.isenabled()
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_an_exception_inside_still_resumes() -> None:
    with pytest.raises(RuntimeError), no_cycle_collection():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_settling_freezes_what_exists() -> None:
    gc.unfreeze()
    kept = [[i] for i in range(1000)]
    settle_after_load()
    try:
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_promote_collects_young_cycles_and_freezes_the_survivors() -> None:
    gc.unfreeze()
    try:
        kept = [_Node() for _ in range(1000)]
        dropped = _Node()
        dropped.other = _Node()
        dropped.other.other = dropped  # a cycle nobody refers to once the name goes
        probe = weakref.ref(dropped)
        del dropped
        assert probe() is not None  # reference counting alone cannot free a cycle
        promote()
        assert probe() is None  # collected, not frozen alive
        assert gc.get_freeze_count() >= len(kept)
        # the frozen objects are out of later passes: a pass now walks only what is new
        assert all(obj not in gc.get_objects(generation=2) for obj in kept[:10])
    finally:
        gc.unfreeze()


def test_promote_does_nothing_while_a_pause_runs() -> None:
    gc.unfreeze()
    try:
        with no_cycle_collection():
            before = gc.get_freeze_count()
            promote()
            assert gc.get_freeze_count() == before
            assert not gc.isenabled()
    finally:
        gc.unfreeze()


async def test_promote_every_runs_until_cancelled() -> None:
    gc.unfreeze()
    try:
        task = asyncio.create_task(promote_every(0.01))
        kept = [[i] for i in range(100)]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if gc.get_freeze_count() >= len(kept):
                break
        assert gc.get_freeze_count() >= len(kept)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gc.unfreeze()
