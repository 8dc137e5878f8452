"""The data plane's progress step: stored on the running record, fenced by the lease, announced; every backend."""

from __future__ import annotations

from cortex.backends import Backends
from cortex.dataplane.base import Finished
from cortex.requests import Outcome, Status, now
from tests.backends.test_dataplane_conformance import _lapse, new, take


async def test_progress_is_stored_on_the_running_record_and_the_latest_wins(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    assert await backends.plane.report_progress(taken.lease, '{"step":1}', now=100.0)
    assert await backends.plane.report_progress(taken.lease, '{"step":2,"of":3}', now=101.5)
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.IN_PROGRESS
    assert (stored.progress, stored.progress_at) == ({"step": 2, "of": 3}, 101.5)


async def test_progress_stays_on_the_record_once_it_ends(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    assert await backends.plane.report_progress(taken.lease, "0.5", now=now())
    assert await backends.plane.finish(taken.lease, Outcome.completed(b"1"), now=now()) is Finished.FINISHED
    assert not await backends.plane.report_progress(taken.lease, "1.0", now=now())
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.status == Status.COMPLETED and stored.progress == 0.5


async def test_a_stale_lease_cannot_write_progress(backends: Backends) -> None:
    await backends.plane.submit(new())
    (old,) = await take(backends, visibility=0.01)
    await _lapse(backends)
    (current,) = await take(backends)
    assert current.lease.token != old.lease.token
    assert not await backends.plane.report_progress(old.lease, '"stale"', now=now())
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.progress is None and stored.progress_at is None
    assert await backends.plane.report_progress(current.lease, '"fresh"', now=now())
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.progress == "fresh"


async def test_a_cancelled_request_takes_no_progress(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    assert await backends.records.finish("api", "r1", Outcome(Status.CANCELLED), now=now())
    assert not await backends.plane.report_progress(taken.lease, "1", now=now())
    stored = await backends.records.get("api", "r1", now=now())
    assert stored is not None and stored.progress is None


async def test_a_progress_write_is_announced(backends: Backends) -> None:
    await backends.plane.submit(new())
    (taken,) = await take(backends)
    watch = backends.plane.changes
    # the subscription is up once the first waiter's wake-up on (re)subscribing has come
    first = watch.waiter("r1")
    assert await watch.wait("r1", first, 10.0)
    woken = watch.waiter("r1")
    assert await backends.plane.report_progress(taken.lease, '"half"', now=now())
    assert await watch.wait("r1", woken, 10.0)
