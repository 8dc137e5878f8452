"""Waiting for a request without polling (issue 19): ``Prefer: wait`` and the events stream.

A wait is woken by the data plane's change notifications (:mod:`cortex.dataplane.watch`): each
take, progress report and finish announces the id it touched, and a waiter reads the record once
per announcement of its id, once at the start and once at its deadline. A lost notification costs
latency, never a wrong answer; an idle waiter costs no backend query.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from cortex.backends import Backends
from cortex.errors import BackendError
from cortex.gateway.answers import log_context, render_record, store_unavailable, unknown_request
from cortex.gateway.directory import RoutedApi
from cortex.requests import RequestRecord, Status, now

log = logging.getLogger(__name__)

#: seconds an events stream goes without reading the record again when no notification came
EVENTS_RECHECK = 15.0


def events_between(shown: RequestRecord | None, record: RequestRecord) -> list[bytes]:
    """The events that tell a client who last saw ``shown`` (None: nothing yet) what ``record`` is now.

    A new status is a ``status`` event (the record as ``GET`` answers it); a new progress report a
    ``progress`` event (the value the user server reported). A progress comes after the
    ``in_progress`` it belongs to and before a terminal status, so a stream reads in the order it
    happened even when one read sees both.
    """
    events = []
    status = b"event: status\ndata: " + render_record(record) + b"\n\n"
    new_status = shown is None or shown.status != record.status
    if new_status and not record.status.terminal:
        events.append(status)
    if record.progress_at is not None and (shown is None or shown.progress_at != record.progress_at):
        value = json.dumps(record.progress, separators=(",", ":"), ensure_ascii=False).encode()
        events.append(b"event: progress\ndata: " + value + b"\n\n")
    if new_status and record.status.terminal:
        events.append(status)
    return events


class Waiting:
    """The waits of one gateway process on its backends' change notifications."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    async def settled(self, api: str, request_id: str, wait: float) -> RequestRecord | None:
        """The record once terminal, or as it stands after ``wait`` seconds (None when unknown).

        One read at the start, one per notification of this id, one at the deadline.
        """
        watch = self.backends.plane.changes
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            woken = watch.waiter(request_id)  # before the read: a change after it wakes this wait
            try:
                record = await self.backends.records.get(api, request_id, now=now())
            except BaseException:
                watch.forget(request_id, woken)
                raise
            remaining = deadline - loop.time()
            if record is None or record.status.terminal or remaining <= 0:
                watch.forget(request_id, woken)
                return record
            await watch.wait(request_id, woken, remaining)

    async def submitted(self, api: RoutedApi, request_id: str, wait: float) -> Response:
        """The answer to a submission with ``Prefer: wait``: the record once terminal, else ``{"id", "status"}``."""
        applied = {"Preference-Applied": f"wait={wait:g}"}
        try:
            record = await self.settled(api.name, request_id, wait)
        except BackendError as exc:
            log.error(
                "could not read request %s of %s: %s",
                request_id,
                api.name,
                exc,
                extra=log_context(api.name, request_id, "read"),
            )
            record = None  # stored and queued: it is still the id to answer
        if record is not None and record.status.terminal:
            return Response(render_record(record), media_type="application/json", headers=applied)
        status = Status.IN_QUEUE if record is None else record.status
        body = json.dumps({"id": request_id, "status": status.value}, separators=(",", ":")).encode()
        return Response(body, media_type="application/json", headers=applied)

    async def events(self, api: RoutedApi, request_id: str) -> Response:
        """``GET /<endpoint>/<id>/events``: Server-Sent Events of the request's statuses and progress, until terminal.

        A ``status`` event's data is the record as ``GET /<endpoint>/<id>`` answers it; a
        ``progress`` event's the value the user server reported (:func:`events_between`). The
        stream is woken by the data plane's notifications, and reads the record again every
        :data:`EVENTS_RECHECK` seconds in case one was lost (a comment line keeps proxies from timing out).
        """
        try:
            first = await self.backends.records.get(api.name, request_id, now=now())
        except BackendError as exc:
            return store_unavailable(api.name, request_id, "read", exc)
        if first is None:
            return unknown_request(api, request_id)
        return StreamingResponse(
            self._stream(api.name, request_id, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, api: str, request_id: str, record: RequestRecord) -> AsyncIterator[bytes]:
        watch = self.backends.plane.changes
        shown: RequestRecord | None = None
        while True:
            for event in events_between(shown, record):
                yield event
            shown = record
            if record.status.terminal:
                return
            woken = watch.waiter(request_id)  # before the read: a change after it wakes this wait
            try:
                fresh = await self.backends.records.get(api, request_id, now=now())
            except BackendError as exc:
                log.warning("events of request %s of %s: the store is unavailable: %s", request_id, api, exc)
                fresh = record
            if fresh is None:  # expired meanwhile
                watch.forget(request_id, woken)
                return
            if (fresh.status, fresh.progress_at) != (record.status, record.progress_at):
                watch.forget(request_id, woken)
            elif not await watch.wait(request_id, woken, EVENTS_RECHECK):
                yield b": waiting\n\n"
            record = fresh
