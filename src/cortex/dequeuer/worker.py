"""The dequeuer's work loop: lease, forward, record, ack (DESIGN §3, §4).

One :class:`Dequeuer` runs per replica. It takes no lease while a readiness probe fails, keeps at
most ``pod.max_concurrency`` requests in flight, renews each lease while its request runs, and on
stop drains: it takes nothing more, lets running requests finish within the grace period, and
hands back what is still running after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from cortex.auth import without_sensitive
from cortex.backends import Backends
from cortex.dataplane.base import Finished, Taken
from cortex.dequeuer.forward import forward
from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.dequeuer.probes import Prober
from cortex.dequeuer.progress import PROGRESS_INTERVAL, ProgressReports
from cortex.dequeuer.readiness import probes_for
from cortex.errors import BackendError, NotFound
from cortex.queue.base import Lease
from cortex.requests import ErrorKind, Outcome, RequestRecord, Status, now
from cortex.spec import ApiSpec, Retry
from cortex.store.base import SizedBlob
from cortex.webhooks.events import PROGRESS_EVENT, PROGRESS_EVERY, schedule, target

log = logging.getLogger(__name__)

#: the longest wait before a failed request is tried again
MAX_RETRY_DELAY = 300.0
#: seconds before a take that failed (the backend unreachable) is tried again; doubled at each failure
TAKE_BACKOFF = 1.0
#: the longest of those waits
MAX_TAKE_BACKOFF = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class DequeuerSettings:
    """How one replica's dequeuer reaches its user server and holds its leases."""

    user_port: int
    user_host: str = "127.0.0.1"
    #: seconds a lease hides a request; renewed every third of it while the request runs
    lease_seconds: float = 30.0
    #: seconds running requests get to finish once a stop is asked for
    grace_period: float = 30.0
    #: longest pause between two looks at an empty queue
    poll_interval: float = 0.1
    #: how often a running request's status is checked for a cancel
    cancel_check: float = 0.5
    #: the most a running request's progress is written to the backend: once per this many seconds
    progress_interval: float = PROGRESS_INTERVAL
    #: the least time between two progress webhooks of one request (when its API asks for them)
    progress_webhook_every: float = PROGRESS_EVERY
    #: acknowledge an answer's head at once (forward.py: the 40 ms Nagle trap); off only to measure the remedy
    quick_ack: bool = True


class Dequeuer:
    """Moves one API's requests from the queue to the user server of one replica."""

    def __init__(
        self, spec: ApiSpec, backends: Backends, settings: DequeuerSettings, metrics: DequeuerMetrics | None = None
    ) -> None:
        self.spec = spec
        self.metrics = metrics if metrics is not None else DequeuerMetrics()
        self.backends = backends
        self.settings = settings
        self.prober = Prober(probes_for(spec, settings.user_port))
        self.url = f"http://{settings.user_host}:{settings.user_port}/"
        self._running: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        #: what the user server reports of the requests it runs (``POST /progress`` on the admin port)
        self.progress = ProgressReports(
            self._write_progress,
            interval=settings.progress_interval,
            notify_every=settings.progress_webhook_every,
        )

    @property
    def in_flight(self) -> int:
        """Requests this replica is running now."""
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain."""
        prober = asyncio.create_task(self.prober.run())
        connector = aiohttp.TCPConnector(limit=self.spec.pod.max_concurrency, force_close=False)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._lease_loop(session, stop)
                await self._drain()
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _lease_loop(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        capacity = self.spec.pod.max_concurrency
        backoff = TAKE_BACKOFF
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not self.prober.ready:
                    await _first(stopping, self.prober.wait_ready(timeout=3600))
                    continue
                free = capacity - len(self._running)
                if free <= 0:
                    self._slot_freed.clear()
                    await _first(stopping, self._slot_freed.wait())
                    continue
                try:
                    taken = await self._take(free)
                except BackendError as exc:  # an outage, a server restarting: wait, never crash
                    log.error("could not take work from the queue (retrying in %gs): %s", backoff, exc)
                    await _first(stopping, asyncio.sleep(backoff))
                    backoff = min(backoff * 2, MAX_TAKE_BACKOFF)
                    continue
                backoff = TAKE_BACKOFF
                for item in taken:
                    task = asyncio.create_task(self._handle(session, item))
                    self._running.add(task)
                    task.add_done_callback(self._done)
        finally:
            stopping.cancel()

    async def _take(self, limit: int) -> list[Taken]:
        """Leases (waiting up to a second for work), each with its request started in the same step."""
        return await self.backends.plane.take(
            self.spec.name,
            visibility=self.settings.lease_seconds,
            limit=limit,
            max_attempts=self.spec.async_.max_attempts,
            timeout=1.0,
            poll=self.settings.poll_interval,
        )

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("request handling crashed", exc_info=task.exception())

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining: %d request(s) running, %gs to finish", len(self._running), self.settings.grace_period)
        _, late = await asyncio.wait(self._running, timeout=self.settings.grace_period)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def _handle(self, session: aiohttp.ClientSession, taken: Taken) -> None:
        """Run one request while its lease is renewed; drop it at once if the lease is taken over."""
        lease = taken.lease
        renewer = asyncio.create_task(self._renew(lease))
        # the run stops the renewals before its last write (a renewal after the ack would find no lease)
        process = asyncio.create_task(self._process(session, taken, renewer.cancel))
        try:
            await asyncio.wait({process, renewer}, return_when=asyncio.FIRST_COMPLETED)
            if not process.done() and not renewer.cancelled():
                renewer.result()  # it ends only when the lease is lost (or on a bug, raised here)
                # another replica holds the request now and its outcome is the one kept (fencing):
                # running it on here would only hold a slot and the user server for nothing
                process.cancel()
                await asyncio.wait({process})
                log.warning(
                    "request %s: lease lost (another replica holds it now); its run here is abandoned",
                    lease.id,
                    extra=self._ctx(lease, "lease_lost"),
                )
                return
            await process
        except asyncio.CancelledError:
            process.cancel()
            await asyncio.wait({process})
            # the grace period ran out: hand the request back for another replica, uncounted
            with contextlib.suppress(BackendError):
                await asyncio.shield(self.backends.queue.release(lease))
            log.warning(
                "request %s handed back unfinished (grace period over)", lease.id, extra=self._ctx(lease, "handback")
            )
            raise
        except BackendError as exc:
            # the store failed mid-way: keep the lease unacked, so it lapses and the request runs again
            log.error(
                "request %s: store failed, it will be retried once its lease lapses: %s",
                lease.id,
                exc,
                extra=self._ctx(lease, "store_failed"),
            )
        finally:
            renewer.cancel()
            if not process.done():
                process.cancel()

    async def _process(self, session: aiohttp.ClientSession, taken: Taken, stop_renewing: Callable[[], object]) -> None:
        """Run ``taken`` and write its outcome; ``stop_renewing`` is called before that last write."""
        api, lease, record = self.spec.name, taken.lease, taken.record
        max_attempts = self.spec.async_.max_attempts
        if taken.exhausted:
            message = f"the request was attempted {max_attempts} times and its worker stopped each time"
            await self._notify(lease.id, record.webhook_url if record else None, "failed")
            stop_renewing()
            if await self._finish(lease, Outcome.failed(ErrorKind.MAX_ATTEMPTS, message)):
                self.metrics.ended(api, Status.FAILED.value)
                if record is not None and record.payload_ref is not None:  # terminal: the payload goes
                    await self.backends.blobs.delete(record.payload_ref)
            return
        if record is None or not taken.started:  # finished, expired or removed: nothing to run
            stop_renewing()
            await self.backends.queue.ack(lease)
            return
        if lease.attempts == 1:
            self.metrics.started(api, (record.started_at or now()) - record.created_at)
        # DEBUG: two INFO lines per request cost a fifth of the dispatch rate (bench/notes.md); a failure stays INFO
        log.debug("processing request %s (attempt %d)", lease.id, lease.attempts, extra=self._ctx(lease, "start"))
        await self._notify(lease.id, record.webhook_url, "in_progress")
        wants_hook = target(self.spec, record.webhook_url, PROGRESS_EVENT) is not None
        self.progress.open(
            lease, functools.partial(self._notify, lease.id, record.webhook_url, PROGRESS_EVENT) if wants_hook else None
        )
        try:
            outcome = await self._run_unless_cancelled(session, record)
            if outcome is not None:  # the last progress reported is stored before the outcome
                await self.progress.flush(lease.id)
        finally:
            self.progress.close(lease.id)
        if outcome is None:
            log.info(
                "request %s cancelled while running: upstream call aborted", lease.id, extra=self._ctx(lease, "cancel")
            )
            self.metrics.ended(api, Status.CANCELLED.value)
            stop_renewing()
            await self.backends.queue.ack(lease)
            if record.payload_ref is not None:
                await self.backends.blobs.delete(record.payload_ref)
            return
        if lease.attempts < max_attempts and retryable(outcome, self.spec.async_.retry):
            delay = min(self.spec.async_.retry.backoff * 2 ** (lease.attempts - 1), MAX_RETRY_DELAY)
            log.warning(
                "request %s: %s; retrying in %gs", lease.id, _message(outcome), delay, extra=self._ctx(lease, "retry")
            )
            stop_renewing()
            await self.backends.queue.release(lease, delay=delay, attempted=True)
            return
        await self._notify(lease.id, record.webhook_url, outcome.status.value)
        stop_renewing()
        if not await self._finish(lease, outcome):
            return
        self.metrics.ended(api, outcome.status.value)
        if record.payload_ref is not None:
            await self.backends.blobs.delete(record.payload_ref)
        level = logging.DEBUG if outcome.status is Status.COMPLETED else logging.INFO
        log.log(level, "request %s %s", lease.id, outcome.status.value, extra=self._ctx(lease, "finish"))

    def _ctx(self, lease: Lease, action: str) -> dict[str, str]:
        """The ``extra=`` of a log line about one request (the JSON logs' ``api``, ``request_id``, ``action``)."""
        return {"api": self.spec.name, "request_id": lease.id, "action": action}

    async def _notify(self, request_id: str, url: str | None, event: str) -> None:
        """Queue the webhook of ``event`` if one is wanted, BEFORE the status is written.

        Queued first, a delivery cannot be lost to a crash between the two writes: the dispatcher
        waits for the status to match, and a re-run queues the same delivery id again (a no-op).
        """
        await schedule(self.backends.queue, self.spec, self.spec.name, request_id, url, event)

    def report_progress(self, request_id: str, progress: str) -> bool:
        """The user server's report (JSON text) for ``request_id``; False if it is not running here."""
        taken = self.progress.report(request_id, progress)
        if taken:
            self.metrics.progress_reported(self.spec.name)
        return taken

    async def _write_progress(self, lease: Lease, progress: str) -> bool:
        self.metrics.progress_written(self.spec.name)
        return await self.backends.plane.report_progress(lease, progress, now=now())

    async def _finish(self, lease: Lease, outcome: Outcome) -> bool:
        """Record the outcome and ack the lease in one step; False if the lease was lost meanwhile."""
        finished = await self.backends.plane.finish(lease, outcome, now=now())
        if finished is Finished.LEASE_LOST:
            log.warning(
                "request %s: lease lost (another replica holds it now); its outcome here is dropped",
                lease.id,
                extra=self._ctx(lease, "lease_lost"),
            )
            return False
        return True

    async def _run_unless_cancelled(self, session: aiohttp.ClientSession, record: RequestRecord) -> Outcome | None:
        """Run ``record``; None if it was cancelled meanwhile (the call to the user server is aborted)."""
        run = asyncio.create_task(self._run(session, record))
        watch = asyncio.create_task(self._watch_cancel(record))
        try:
            done, _ = await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this task itself is cancelled (the drain's grace period ran out)
            for task in (run, watch):
                task.cancel()
            await asyncio.wait({run, watch})
        return run.result() if run in done else None

    async def _watch_cancel(self, record: RequestRecord) -> None:
        """Return once the request is cancelled (checked every ``cancel_check`` seconds)."""
        while True:
            await asyncio.sleep(self.settings.cancel_check)
            try:
                current = await self.backends.records.get(record.api, record.id, now=now())
            except BackendError:
                continue  # cannot tell: keep running
            if current is None or current.status == Status.CANCELLED:
                return

    async def _run(self, session: aiohttp.ClientSession, record: RequestRecord) -> Outcome:
        body: bytes | SizedBlob = record.payload or b""
        if record.payload_ref is not None:
            try:  # its length too, for the Content-Length; a missing blob shows here, before connecting
                body = await self.backends.blobs.open_sized(record.payload_ref)
            except NotFound:
                return Outcome.failed(ErrorKind.PAYLOAD_LOST, "the stored payload of this request is missing")
        sent = time.monotonic()
        outcome = await forward(
            session,
            self.url,
            request_id=record.id,
            # the gateway stores no sensitive header unless the API forwards them; older records may hold some
            headers=without_sensitive(record.headers, keep=self.spec.async_.forward_sensitive_headers),
            body=body,
            timeout=self.spec.async_.request_timeout,
            quick_ack=self.settings.quick_ack,
        )
        if outcome.http_status is not None:  # an answer, whatever it said (no answer: no sample, as Cortex)
            self.metrics.answered(record.api, outcome.http_status, time.monotonic() - sent)
        return outcome

    async def _renew(self, lease: Lease) -> None:
        """Renew ``lease`` every third of its length; return once the backend says it is lost.

        A renewal that fails (the backend unreachable) is tried again at the next tick: the lease
        may have lapsed meanwhile, and then the backend says so once it answers again. Until then the
        request keeps running; its outcome is refused by the finish step if another replica took it.
        """
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.backends.queue.renew(lease, visibility=self.settings.lease_seconds):
                    return
            except BackendError as exc:
                log.warning(
                    "request %s: lease renewal failed (will retry): %s", lease.id, exc, extra=self._ctx(lease, "renew")
                )


def retryable(outcome: Outcome, retry: Retry) -> bool:
    """Whether a failed run is tried again (``async.retry``).

    No answer is not an answer: by default a refused or dropped connection (the user server
    crashed or is restarting, a crash in DESIGN §4's sense) is retried; a 5xx answer only if the
    API asks for it. Any other answer is final.
    """
    if outcome.error is None:
        return False
    if outcome.error.kind == ErrorKind.UNREACHABLE:
        return retry.connection
    return retry.http_5xx and outcome.http_status is not None and outcome.http_status >= 500


def _message(outcome: Outcome) -> str:
    return "" if outcome.error is None else outcome.error.message


async def _first(stopping: asyncio.Task[bool], waiting: Coroutine[Any, Any, object]) -> None:
    """Wait for ``waiting`` or for the stop, whichever comes first."""
    task = asyncio.ensure_future(waiting)
    await asyncio.wait({stopping, task}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
