"""The embedded queue's wake-ups between processes sharing a state directory."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cortex.backends import BackendUrls, open_backends
from cortex.queue.sqlite import SqliteQueue
from cortex.queue.wake import WakeListener, wake
from cortex.requests import NewRequest, now


async def test_an_enqueue_in_another_process_wakes_the_waiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # without a wake-up the waiter would look again only after an hour, and the test would time out
    monkeypatch.setattr(SqliteQueue, "FALLBACK_POLL", 3600.0)
    urls = BackendUrls.for_state_dir(tmp_path)
    waiter, producer = await open_backends(urls), await open_backends(urls)
    try:
        waiting = asyncio.create_task(waiter.queue.wait_lease("api", visibility=30, timeout=3600))
        await asyncio.sleep(0.1)
        await producer.queue.enqueue("api", "r1")
        leases = await asyncio.wait_for(waiting, timeout=20)
        assert [lease.id for lease in leases] == ["r1"]
    finally:
        await waiter.aclose()
        await producer.aclose()
    assert list((tmp_path / "wake").iterdir()) == []  # closing removed the socket files


async def test_a_submit_in_another_process_ends_a_wait_for_work_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What wakes the autoscaler when a gateway (another process) submits to an API at zero replicas."""
    monkeypatch.setattr(SqliteQueue, "FALLBACK_POLL", 3600.0)
    urls = BackendUrls.for_state_dir(tmp_path)
    watcher, gateway = await open_backends(urls), await open_backends(urls)
    try:
        watching = asyncio.create_task(watcher.queue.wait_work("api", timeout=3600))
        await asyncio.sleep(0.1)
        assert not watching.done()
        created = now()
        request = NewRequest(id="r1", api="api", created_at=created, expires_at=created + 600, headers=(), payload=b"")
        await gateway.plane.submit(request)
        assert await asyncio.wait_for(watching, timeout=20)
    finally:
        await watcher.aclose()
        await gateway.aclose()
    assert list((tmp_path / "wake").iterdir()) == []  # the watch's socket is gone with it


async def test_wake_skips_other_apis_and_removes_stale_sockets(tmp_path: Path) -> None:
    folder = tmp_path / "wake"
    mine, other = WakeListener(folder, "api"), WakeListener(folder, "other")
    stale = folder / "api.999999.dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(stale))  # bound, then closed: like a process killed without cleaning up
    try:
        wake(folder, "api")
        assert await mine.wait(5)
        assert not await other.wait(0.05)
        assert not stale.exists()
        assert not await mine.wait(0.05)  # the one wake-up was consumed
    finally:
        mine.close()
        other.close()
