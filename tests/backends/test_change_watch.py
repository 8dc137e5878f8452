"""The one subscription per process that wakes the waiters of a request (cortex.dataplane.watch)."""

from __future__ import annotations

import asyncio

import pytest

from cortex.dataplane import watch as watch_module
from cortex.dataplane.watch import ChangeWatch


async def test_a_change_wakes_the_waiters_of_that_id_only() -> None:
    watch = ChangeWatch()
    mine, other = watch.waiter("a"), watch.waiter("b")
    watch.changed("a")
    assert await watch.wait("a", mine, 30)
    assert not other.done() and watch.waiting("b") and not watch.waiting("a")
    assert not await watch.wait("b", other, 0)  # the deadline: the caller reads once more
    assert not watch.waiting("b")


async def test_each_subscription_wakes_every_waiter_and_a_lost_one_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change made while the subscription was down is not lost: its waiters read again on reconnect."""
    monkeypatch.setattr(watch_module, "RECONNECT_S", 0.0)
    runs = 0
    lose = asyncio.Event()

    async def listen(watch: ChangeWatch) -> None:
        nonlocal runs
        runs += 1
        watch.subscribed()
        await lose.wait()
        lose.clear()
        raise ConnectionError("gone")

    watch = ChangeWatch(listen)
    first = watch.waiter("a")
    assert await watch.wait("a", first, 30)  # woken by the first subscription
    second = watch.waiter("a")
    lose.set()
    assert await watch.wait("a", second, 30)  # woken by the second one, after the loss
    assert runs == 2
    await watch.aclose()
    assert not watch.waiting("a")
