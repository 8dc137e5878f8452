"""The dequeuer's coalescing of progress reports: what reaches the data plane, and when."""

from __future__ import annotations

import asyncio

from cortex.dequeuer.progress import ProgressReports
from cortex.queue.base import Lease

LEASE = Lease(api="api", id="r1", attempts=1, token=7)


class Written:
    """The writes that reached the (here recorded) data-plane step, and the webhooks queued."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.hooks = 0
        self.write_done = asyncio.Event()

    async def write(self, lease: Lease, progress: str) -> bool:
        assert lease == LEASE
        self.values.append(progress)
        self.write_done.set()
        return True

    async def hook(self) -> None:
        self.hooks += 1


async def test_a_burst_of_reports_is_one_write_of_the_last_value() -> None:
    written = Written()
    reports = ProgressReports(written.write, interval=3600.0)
    reports.open(LEASE)
    for n in range(1000):
        assert reports.report("r1", str(n))
    await written.write_done.wait()
    assert written.values == ["999"] and (reports.reports, reports.writes) == (1000, 1)


async def test_reports_within_the_interval_wait_and_the_flush_writes_the_last_one() -> None:
    written = Written()
    reports = ProgressReports(written.write, interval=3600.0)
    reports.open(LEASE)
    reports.report("r1", "1")
    await written.write_done.wait()
    reports.report("r1", "2")
    reports.report("r1", "3")  # the next write waits an hour: only the flush before the outcome writes it
    await reports.flush("r1")
    assert written.values == ["1", "3"]
    assert not reports.report("r1", "4")  # ended: no longer taken


async def test_an_abandoned_run_drops_what_is_pending() -> None:
    written = Written()
    reports = ProgressReports(written.write, interval=3600.0)
    reports.open(LEASE)
    reports.report("r1", "1")
    await written.write_done.wait()
    reports.report("r1", "2")
    reports.close("r1")
    await asyncio.sleep(0)
    assert written.values == ["1"]


async def test_a_request_not_running_here_is_refused() -> None:
    reports = ProgressReports(Written().write)
    assert not reports.report("r1", "1")
    assert reports.reports == 0


async def test_the_progress_webhook_is_queued_once_per_interval() -> None:
    written = Written()
    reports = ProgressReports(written.write, interval=0.0, notify_every=3600.0)
    reports.open(LEASE, written.hook)
    for n in range(5):
        written.write_done.clear()
        reports.report("r1", str(n))
        await written.write_done.wait()
    await reports.flush("r1")
    assert written.values == ["0", "1", "2", "3", "4"] and written.hooks == 1


async def test_without_a_webhook_none_is_queued() -> None:
    written = Written()
    reports = ProgressReports(written.write, interval=0.0, notify_every=0.0)
    reports.open(LEASE)
    reports.report("r1", "1")
    await reports.flush("r1")
    assert written.values == ["1"] and written.hooks == 0
