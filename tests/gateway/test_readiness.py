"""``/readyz``'s ping: one per burst of probes, cached briefly, with a deadline of its own."""

from __future__ import annotations

import asyncio

from cortex.errors import BackendError
from cortex.gateway.readiness import Readiness


async def test_a_burst_of_probes_shares_one_ping_and_its_answer_is_cached() -> None:
    pings = 0

    async def ping() -> None:
        nonlocal pings
        pings += 1
        await asyncio.sleep(0.05)

    readiness = Readiness(ping, interval=0.3)
    assert await asyncio.gather(*(readiness.check() for _ in range(50))) == [None] * 50
    assert await readiness.check() is None
    assert pings == 1
    await asyncio.sleep(0.35)
    assert await readiness.check() is None
    assert pings == 2


async def test_a_failing_or_hanging_ping_is_not_ready_and_heals() -> None:
    state = {"mode": "hang"}

    async def ping() -> None:
        if state["mode"] == "hang":
            await asyncio.sleep(3600)
        if state["mode"] == "fail":
            raise BackendError("Redis GET failed at redis://h: Connection refused")

    readiness = Readiness(ping, interval=0.0, deadline=0.1)
    assert await asyncio.wait_for(readiness.check(), 1) == "the backend did not answer within 0.1s"
    state["mode"] = "fail"
    assert "Connection refused" in (await readiness.check() or "")
    state["mode"] = "ok"
    assert await readiness.check() is None
