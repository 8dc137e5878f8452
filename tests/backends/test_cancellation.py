"""A task cancelled while it waits on a backend stops, on every backend.

CPython 3.11's ``asyncio.wait_for`` drops a cancel that arrives as the inner call finishes
(gh-86296), and the Redis and PostgreSQL drivers wait that way inside every command: the
dequeuer's cancel watcher once looped on after its cancel (:mod:`cortex.cancellation`). The race
is narrow, so each test cancels many times at random points of a loop of reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from cortex.backends import Backends
from cortex.cancellation import raise_if_cancelling
from cortex.errors import BackendError
from cortex.requests import now

ROUNDS = 1500


async def test_every_cancel_of_a_reading_task_stops_it(backends: Backends) -> None:
    async def reader(stop: asyncio.Event) -> None:
        while not stop.is_set():  # the way out when a cancel is lost, so that the test fails rather than hangs
            await asyncio.sleep(0)
            try:
                await backends.records.get("echo", "01kaq3m2x0c5p1z8e4n7w9r6ty", now=now())
            except BackendError:
                continue

    rng = random.Random(7)
    lost = 0
    for _ in range(ROUNDS):
        stop = asyncio.Event()
        task = asyncio.create_task(reader(stop))
        await asyncio.sleep(rng.random() * 0.002)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done or not task.cancelled():
            lost += 1
            stop.set()
            await asyncio.wait({task}, timeout=2)
    assert lost == 0, f"{lost} of {ROUNDS} cancelled tasks went on reading"


async def test_a_cancel_the_task_did_not_take_back_is_raised() -> None:
    async def swallows_then_goes_on() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # what wait_for does on the race: no uncancel()
            await asyncio.sleep(10)
        raise_if_cancelling()
        return "went on"

    task = asyncio.create_task(swallows_then_goes_on())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancel_taken_back_is_not_raised_again() -> None:
    async def handles_its_cancel() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()
        raise_if_cancelling()
        return "went on"

    task = asyncio.create_task(handles_its_cancel())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "went on"
