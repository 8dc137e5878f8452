"""The operator's status page: one HTML page (``GET /status``) and the JSON it is drawn from.

The page (``status_page.html`` beside this module) needs nothing from the network: inline CSS,
a little inline JavaScript, charts drawn as inline SVG. Everything it shows comes from these
JSON endpoints, which scripts may read as well:

- ``GET /status/apis``: every deployed API with its replicas (the numbers of ``cortex get``) and
  its queue now (:meth:`~cortex.queue.base.Queue.depth`);
- ``GET /status/apis/{api}/history``: the last hour of autoscaler ticks (:mod:`.history`);
- ``GET /status/apis/{api}/requests?limit=N``: the newest requests (:meth:`~cortex.store.base.RecordStore.recent`);
- ``GET /status/apis/{api}/requests/{id}``: one request, with its result or error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cortex.errors import NotFound
from cortex.operator.answers import error, guarded
from cortex.operator.history import History
from cortex.operator.service import Operator
from cortex.queue.base import Queue
from cortex.recordanswer import added_values
from cortex.recordfields import ANSWER, Shown
from cortex.requests import RequestRecord
from cortex.store.base import RecordStore

#: requests listed when the query does not say, and at most
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
#: results longer than this are left out of a request's detail (the gateway serves them whole)
MAX_RESULT_BYTES = 64 * 1024

Endpoint = Callable[[Request], Awaitable[Response]]


def summary(record: RequestRecord) -> dict[str, Any]:
    """One request as the page's list shows it; ``latency`` is submission to end (None until it ends)."""
    latency = None
    if record.status.terminal and record.finished_at is not None:
        latency = record.finished_at - record.created_at
    return {
        "id": record.id,
        "status": record.status.value,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "attempts": record.attempts,
        "latency": latency,
        "error_kind": None if record.error is None else record.error.kind,
    }


def detail(record: RequestRecord, answer: Sequence[Shown] = ANSWER) -> dict[str, Any]:
    """One request with its result (parsed, when small enough), error and webhook delivery.

    ``more`` holds the record's fields declared shown since the page was written
    (:func:`~cortex.recordanswer.added_values`), as the GET answer renders them: the page lists them
    after its own.
    """
    result: Any = None
    size = None if record.result is None else len(record.result)
    if record.result is not None and len(record.result) <= MAX_RESULT_BYTES:
        try:
            result = json.loads(record.result)
        except ValueError:  # stored after a validity check; shown as text should that ever fail
            result = record.result.decode("utf-8", errors="replace")
    return {
        **summary(record),
        "api": record.api,
        "expires_at": record.expires_at,
        "error": None if record.error is None else {"kind": record.error.kind, "message": record.error.message},
        "result": result,
        "result_size": size,
        "result_shown": size is not None and size <= MAX_RESULT_BYTES,
        "webhook_url": record.webhook_url,
        "webhook": record.webhook,
        "more": added_values(record, answer),
    }


class StatusPage:
    """The page and its JSON, over the operator, the queue, the record store and the tick history."""

    def __init__(
        self,
        operator: Operator,
        queue: Queue,
        records: RecordStore,
        history: History,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.operator = operator
        self.queue = queue
        self.records = records
        self.history = history
        self._clock = clock
        self._html = resources.files("cortex.operator").joinpath("status_page.html").read_text(encoding="utf-8")

    def routes(self) -> list[Route]:
        """The page's routes, to mount on the operator's app."""
        return [
            Route("/status", self.page),
            Route("/status/apis", guarded(self.apis)),
            Route("/status/apis/{api}/history", guarded(self.api_history)),
            Route("/status/apis/{api}/requests", guarded(self.requests)),
            Route("/status/apis/{api}/requests/{id}", guarded(self.request)),
        ]

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self._html, headers={"Cache-Control": "no-store"})

    async def apis(self, request: Request) -> Response:
        entries = await self.operator.catalog.list_apis()
        depths = await asyncio.gather(*(self.queue.depth(entry.name) for entry in entries))
        counts = await asyncio.gather(*(self.records.counts(entry.name, now=self._clock()) for entry in entries))
        listed = []
        for entry, depth, counted in zip(entries, depths, counts, strict=True):
            response = self.operator.api_response(entry)
            listed.append(
                {
                    "name": entry.name,
                    "endpoint": response["endpoint"],
                    "replicas": response["status"],
                    "problems": response["problems"],
                    "queue": {
                        "queued": depth.queued,
                        "in_flight": depth.in_flight,
                        "oldest_queued_age": depth.oldest_queued_age,
                    },
                    # by status, over the retention window (the queue summary's, `GET /queue/<api>`)
                    "requests": {status.value: n for status, n in counted.items()},
                }
            )
        return JSONResponse({"time": self._clock(), "apis": listed})

    async def api_history(self, request: Request) -> Response:
        name = await self._api(request)
        points = self.history.points(name, now=self._clock())
        return JSONResponse(
            {
                "api": name,
                "span": self.history.span,
                "resolution": self.history.resolution,
                "points": [point.to_json() for point in points],
            }
        )

    async def requests(self, request: Request) -> Response:
        name = await self._api(request)
        text = request.query_params.get("limit", str(DEFAULT_LIMIT))
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            return error(400, "bad_request", f"limit must be a whole number from 1 to {MAX_LIMIT} (got {text!r})")
        records = await self.records.recent(name, limit=int(text), now=self._clock())
        return JSONResponse({"api": name, "requests": [summary(record) for record in records]})

    async def request(self, request: Request) -> Response:
        name = await self._api(request)
        request_id = request.path_params["id"]
        record = await self.records.get(name, request_id, now=self._clock())
        if record is None:
            raise NotFound(f"request {request_id} of api {name} not found (unknown or expired)")
        return JSONResponse(detail(record))

    async def _api(self, request: Request) -> str:
        """The deployed API the path names (NotFound otherwise)."""
        name: str = request.path_params["api"]
        if await self.operator.catalog.get_api(name) is None:
            raise NotFound(f"api {name} is not deployed (see `cortex get` for the deployed APIs)")
        return name
