"""The progress the user server reports for the requests it runs, coalesced before it reaches the backend.

A user server reports with ``POST $CORTEX_DEQUEUER_URL/progress`` (:func:`progress_body` checks the
body, :mod:`cortex.dequeuer.service` serves the route). A server in a tight loop may report
thousands of times a second; each report costs nothing but a memory write here, and each request's
latest value reaches the backend at most once per :data:`PROGRESS_INTERVAL` seconds (the first at
once, last value wins). When the request ends with an outcome, the value still pending is written
before the outcome (:meth:`ProgressReports.flush`), so the final record and the events stream show
the last progress reported; when its run is abandoned (cancelled, lease lost, handed back) it is
dropped (:meth:`ProgressReports.close`).

A request whose API asks for ``progress`` webhooks has one queued after a write, at most once per
:data:`~cortex.webhooks.events.PROGRESS_EVERY` seconds (the delivery sends the record as it then
stands, so the latest progress).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cortex.errors import BackendError
from cortex.queue.base import Lease
from cortex.webhooks.events import PROGRESS_EVERY

log = logging.getLogger(__name__)

#: the most a request's progress is written to the backend: once per this many seconds
PROGRESS_INTERVAL = 0.5
#: the largest progress body accepted, in bytes (RunPod's ``progress_update`` is free-form; this is bounded)
MAX_PROGRESS_BYTES = 4096


class ProgressProblem(ValueError):
    """A progress body that cannot be stored; the message says why."""


def progress_body(body: bytes) -> str:
    """The JSON text to store for ``body``: any JSON value, re-serialized compactly (one line, for SSE).

    Raises:
        ProgressProblem: ``body`` is over :data:`MAX_PROGRESS_BYTES`, or not one JSON value.
    """
    if len(body) > MAX_PROGRESS_BYTES:
        raise ProgressProblem(f"the progress body is {len(body)} bytes; at most {MAX_PROGRESS_BYTES} are accepted")

    def refuse(constant: str) -> Any:
        raise ProgressProblem(f"the progress body holds {constant}, which JSON does not allow")

    try:
        value = json.loads(body, parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProgressProblem(f"the progress body is not JSON: {exc}") from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass(slots=True)
class _Running:
    """One running request's reports: the value not yet written, and its writer."""

    lease: Lease
    #: queues the request's progress webhook, when its API asks for them
    notify: Callable[[], Awaitable[None]] | None = None
    pending: str | None = None
    #: the loop time of the last write (its start); -inf before the first
    written_at: float = float("-inf")
    writer: asyncio.Task[None] | None = None
    #: whether the writer is still waiting for its turn (then it can be cancelled without losing a write)
    sleeping: bool = False
    #: the loop time the last progress webhook was queued; -inf before the first
    notified_at: float = float("-inf")


class ProgressReports:
    """The progress of the requests one dequeuer runs, written at most once per ``interval`` each.

    ``write(lease, progress)`` is the data plane's fenced step (:meth:`DataPlane.report_progress`).
    """

    def __init__(
        self,
        write: Callable[[Lease, str], Awaitable[bool]],
        *,
        interval: float = PROGRESS_INTERVAL,
        notify_every: float = PROGRESS_EVERY,
    ) -> None:
        self._write = write
        self._interval = interval
        self._notify_every = notify_every
        self._running: dict[str, _Running] = {}
        #: backend writes made (what coalescing saves is reports minus writes)
        self.writes = 0
        #: reports accepted
        self.reports = 0

    def open(self, lease: Lease, notify: Callable[[], Awaitable[None]] | None = None) -> None:
        """``lease``'s request is running here: its reports are accepted from now on.

        ``notify`` queues its progress webhook (given when its API asks for them).
        """
        self._running[lease.id] = _Running(lease, notify)

    def report(self, request_id: str, progress: str) -> bool:
        """Take ``progress`` (JSON text) as the latest of ``request_id``; False if it does not run here."""
        running = self._running.get(request_id)
        if running is None:
            return False
        self.reports += 1
        running.pending = progress
        if running.writer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, running.written_at + self._interval - loop.time())
            running.sleeping = True
            running.writer = asyncio.create_task(self._write_after(running, delay))
        return True

    async def _write_after(self, running: _Running, delay: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(delay)
            running.sleeping = False
            progress, running.pending = running.pending, None
            if progress is None:
                break
            running.written_at = loop.time()
            await self._store(running, progress)
            if running.pending is None or self._running.get(running.lease.id) is not running:
                break  # nothing new, or flushed meanwhile (the flush writes what is pending)
            running.sleeping = True
            delay = max(0.0, running.written_at + self._interval - loop.time())
        running.writer = None

    async def _store(self, running: _Running, progress: str) -> None:
        lease = running.lease
        self.writes += 1
        try:
            if not await self._write(lease, progress):
                log.debug("request %s: progress not stored (no longer running under this lease)", lease.id)
                return
            loop = asyncio.get_running_loop()
            if running.notify is not None and loop.time() - running.notified_at >= self._notify_every:
                running.notified_at = loop.time()
                await running.notify()
        except BackendError as exc:  # progress is advisory: the run goes on, a later report may get through
            log.warning("request %s: progress not stored: %s", lease.id, exc)

    async def flush(self, request_id: str) -> None:
        """Stop taking reports for ``request_id`` and write the value still pending (before its outcome)."""
        running = self._running.pop(request_id, None)
        if running is None:
            return
        writer = running.writer
        if writer is not None:
            if running.sleeping:
                writer.cancel()
            await asyncio.wait({writer})
        if running.pending is not None:
            progress, running.pending = running.pending, None
            await self._store(running, progress)

    def close(self, request_id: str) -> None:
        """Stop taking reports for ``request_id``; a value still pending is dropped."""
        running = self._running.pop(request_id, None)
        if running is not None and running.writer is not None:
            running.writer.cancel()
