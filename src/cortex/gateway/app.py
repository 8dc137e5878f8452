"""The gateway's routes (DESIGN §2): submit, status and result, health.

``POST /<endpoint>`` streams the body into the store (small bodies stay in the record, larger
ones go to a blob), stores the record, queues the id, and only then answers ``200 {"id"}``.
``GET /<endpoint>/<id>`` answers from the record, splicing in the stored result bytes as they
are, without parsing them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cortex.backends import Backends
from cortex.errors import BackendError
from cortex.exposition import fetch_all, merge
from cortex.gateway.directory import ApiDirectory, RoutedApi
from cortex.gateway.metrics import GatewayMetrics
from cortex.ids import is_valid_id, new_id
from cortex.requests import Duplicate, ErrorKind, NewRequest, Outcome, RequestRecord, Status, now, rfc3339
from cortex.store.sqlite import joint
from cortex.webhooks.events import URL_HEADER, schedule

log = logging.getLogger(__name__)

#: the scope key where :meth:`Gateway.route` notes the route kind and API it dispatched to (for the metrics)
ROUTE_KEY = "cortex.route"

#: headers that describe one hop, not the request: never stored or replayed to the user server
_HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
        "x-cortex-request-id",  # minted here, never taken from a client
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Tuning of one gateway process."""

    #: bodies up to this size are kept in the record itself; larger ones stream to a blob
    inline_limit: int = 64 * 1024
    #: how often expired records and their blobs are swept (every gateway sweeps; it is idempotent)
    sweep_interval: float = 60.0
    #: how long a deploy may take to reach this gateway
    catalog_ttl: float = 2.0


#: records removed per retention-sweep statement (the sweep repeats while batches are full)
SWEEP_BATCH = 1000


class PayloadTooLarge(Exception):
    """The body grew past the API's ``async.max_payload_size``."""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Every error the gateway answers: JSON ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class Gateway:
    """The request handlers, bound to one process's backends."""

    def __init__(self, backends: Backends, settings: GatewaySettings) -> None:
        self.backends = backends
        self.settings = settings
        self.directory = ApiDirectory(backends.catalog, ttl=settings.catalog_ttl)
        #: the embedded backends store the record and queue it in one commit
        self._joint = joint(backends.records, backends.queue)

    async def route(self, request: Request) -> Response:
        """Dispatch ``/<endpoint>`` and ``/<endpoint>/<id>`` by method."""
        path: str = request.scope["path"]
        trimmed = path[:-1] if path.endswith("/") and len(path) > 1 else path
        api = await self.directory.resolve(trimmed)
        if api is not None:
            if request.method == "POST":
                request.scope[ROUTE_KEY] = ("submit", api.name)
                return await self.submit(request, api)
            return _not_allowed(request.method, path, "POST", f"use POST {api.endpoint} to submit a request")
        prefix, _, request_id = trimmed.rpartition("/")
        api = await self.directory.resolve(prefix) if prefix else None
        if api is None:
            return error_response(404, f"no API is deployed at {path}")
        if request.method in ("GET", "HEAD"):
            request.scope[ROUTE_KEY] = ("status", api.name)
            return await self.status(api, request_id)
        if request.method == "DELETE":
            request.scope[ROUTE_KEY] = ("cancel", api.name)
            return await self.cancel(api, request_id)
        return _not_allowed(request.method, path, "GET, DELETE", f"use GET {api.endpoint}/<id> to read a request")

    async def submit(self, request: Request, api: RoutedApi) -> Response:
        """Store and queue one request; 200 ``{"id"}`` only once both are durable."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > api.max_payload_size:
            return _too_large(api)
        key = request.headers.get("idempotency-key")
        webhook_url = request.headers.get(URL_HEADER)
        problem = _check_extension_headers(key, webhook_url)
        if problem is not None:
            return error_response(400, problem)
        request_id = new_id()
        digest = hashlib.sha256() if key is not None else None
        stream = _limited(request.stream(), api.max_payload_size, digest)
        try:
            payload, payload_ref = await self._take_body(request_id, stream)
        except PayloadTooLarge:
            return _too_large(api)
        except ClientDisconnect:
            return error_response(400, "the client closed the connection before the body was complete")
        created = now()
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.decode("latin-1").lower() not in _HOP_HEADERS
        )
        record = NewRequest(
            id=request_id,
            api=api.name,
            created_at=created,
            expires_at=created + api.retention,
            headers=headers,
            payload=payload,
            payload_ref=payload_ref,
            idempotency_key=key,
            body_digest=None if digest is None else digest.hexdigest(),
            webhook_url=webhook_url,
        )
        stored = await self._store(record)
        if isinstance(stored, Response):
            return stored
        if stored is not None:  # the key is held: the same request again, or a reuse of its key
            if payload_ref is not None:
                await self.backends.blobs.delete(payload_ref)
            if stored.body_digest != record.body_digest:
                return error_response(
                    409, f"Idempotency-Key {key!r} was already used with another body, by request {stored.id}"
                )
            request_id = stored.id
        return Response(b'{"id":"' + request_id.encode() + b'"}', media_type="application/json")

    async def _store(self, record: NewRequest) -> Response | Duplicate | None:
        """Store the record and queue its id: None once both are durable, the :class:`Duplicate` holding
        its idempotency key (nothing stored), or the error to answer."""
        request_id, name = record.id, record.api
        try:
            if self._joint is not None:
                return await self._joint.submit(record)  # one commit for both: nothing to undo on failure
            duplicate = await self.backends.records.create(record)
            if duplicate is not None:
                return duplicate
        except BackendError as exc:
            log.error(
                "could not store request %s of %s: %s", request_id, name, exc, extra=_ctx(name, request_id, "store")
            )
            if record.payload_ref is not None:
                await self.backends.blobs.delete(record.payload_ref)
            return error_response(503, "the request could not be stored; nothing was queued, send it again")
        try:
            await self.backends.queue.enqueue(name, request_id)
        except BackendError as exc:
            log.error(
                "could not queue request %s of %s: %s", request_id, name, exc, extra=_ctx(name, request_id, "enqueue")
            )
            with contextlib.suppress(BackendError):
                outcome = Outcome.failed(ErrorKind.INTERNAL, "the gateway could not queue the request")
                await self.backends.records.finish(name, request_id, outcome, now=now())
            return error_response(503, "the request could not be queued; send it again")
        return None

    async def _take_body(self, request_id: str, stream: AsyncIterator[bytes]) -> tuple[bytes | None, str | None]:
        """Read the body: small bodies whole, larger ones streamed to a blob keyed by the request id."""
        head: list[bytes] = []
        size = 0
        async for chunk in stream:
            head.append(chunk)
            size += len(chunk)
            if size > self.settings.inline_limit:
                await self.backends.blobs.put(request_id, _chain(head, stream))
                return None, request_id
        return b"".join(head), None

    async def status(self, api: RoutedApi, request_id: str) -> Response:
        """``GET /<endpoint>/<id>``: the record as JSON, with the result bytes spliced in."""
        record = None
        if is_valid_id(request_id):
            try:
                record = await self.backends.records.get(api.name, request_id, now=now())
            except BackendError as exc:
                log.error(
                    "could not read request %s of %s: %s",
                    request_id,
                    api.name,
                    exc,
                    extra=_ctx(api.name, request_id, "read"),
                )
                return error_response(503, "the request store is unavailable; try again")
        if record is None:
            return error_response(404, f"request {request_id} of api {api.name} not found (unknown or expired)")
        return Response(render_record(record), media_type="application/json")

    async def cancel(self, api: RoutedApi, request_id: str) -> Response:
        """``DELETE /<endpoint>/<id>``: a queued request never runs; a running one has its call aborted.

        Cancelling a cancelled request again is harmless (200); cancelling a finished one is 409.
        """
        records = self.backends.records
        try:
            record = await records.get(api.name, request_id, now=now()) if is_valid_id(request_id) else None
            if record is None:
                return error_response(404, f"request {request_id} of api {api.name} not found (unknown or expired)")
            if not record.status.terminal:
                await schedule(self.backends.queue, api.spec, api.name, request_id, record.webhook_url, "cancelled")
                if await records.finish(api.name, request_id, Outcome(Status.CANCELLED), now=now()):
                    # the dequeuer holding it (if any) sees the status and aborts the upstream call
                    await self.backends.queue.remove(api.name, request_id)
                record = await records.get(api.name, request_id, now=now())
        except BackendError as exc:
            log.error(
                "could not cancel request %s of %s: %s",
                request_id,
                api.name,
                exc,
                extra=_ctx(api.name, request_id, "cancel"),
            )
            return error_response(503, "the request store is unavailable; try again")
        if record is None:
            return error_response(404, f"request {request_id} of api {api.name} not found (unknown or expired)")
        if record.status != Status.CANCELLED:
            body = json.dumps(
                {"error": f"request {request_id} is already {record.status.value}", "status": record.status.value}
            )
            return Response(body.encode(), status_code=409, media_type="application/json")
        return Response(render_record(record), media_type="application/json")

    async def sweep_forever(self) -> None:
        """Remove expired records and their blobs, every ``sweep_interval`` seconds."""
        while True:
            try:
                while True:
                    swept = await self.backends.records.sweep(now=now(), limit=SWEEP_BATCH)
                    for key in swept.blob_keys:
                        await self.backends.blobs.delete(key)
                    if swept.deleted < SWEEP_BATCH:
                        break
            except BackendError as exc:
                log.warning("retention sweep failed (will retry): %s", exc)
            await asyncio.sleep(self.settings.sweep_interval)


def _ctx(api: str, request_id: str, action: str) -> dict[str, str]:
    """The ``extra=`` of a log line about one request (the JSON logs' ``api``, ``request_id``, ``action``)."""
    return {"api": api, "request_id": request_id, "action": action}


#: the same timestamps are formatted again at every poll of a request: keep the recent ones
_timestamp = functools.lru_cache(maxsize=4096)(rfc3339)


def render_record(record: RequestRecord) -> bytes:
    """The JSON body of ``GET /<endpoint>/<id>``: Cortex's fields first, then ours."""
    fields: dict[str, Any] = {"id": record.id, "status": record.status.value}
    tail: dict[str, Any] = {}
    if record.status == Status.COMPLETED and record.finished_at is not None:
        tail["timestamp"] = _timestamp(record.finished_at, millis=False)
    if record.error is not None:
        tail["error"] = {"kind": record.error.kind, "message": record.error.message}
    tail["created_at"] = _timestamp(record.created_at)
    for key, value in (("started_at", record.started_at), ("finished_at", record.finished_at)):
        if value is not None:
            tail[key] = _timestamp(value)
    tail["expires_at"] = _timestamp(record.expires_at)
    tail["attempts"] = record.attempts
    if record.webhook is not None:
        tail["webhook"] = record.webhook
    head = json.dumps(fields, separators=(",", ":"))[:-1]
    rest = json.dumps(tail, separators=(",", ":"))[1:]
    if record.status == Status.COMPLETED and record.result is not None:
        return f'{head},"result":'.encode() + record.result + f",{rest}".encode()
    return f"{head},{rest}".encode()


async def _limited(stream: AsyncIterator[bytes], limit: int, digest: Any = None) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        if chunk:
            if digest is not None:
                digest.update(chunk)
            yield chunk


def _check_extension_headers(key: str | None, webhook_url: str | None) -> str | None:
    """What is wrong with ``Idempotency-Key`` or ``X-Cortex-Webhook-URL``, or None."""
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        return "Idempotency-Key must be 1 to 255 printable characters"
    if webhook_url is not None:
        scheme, _, rest = webhook_url.partition("://")
        if scheme not in ("http", "https") or not rest or rest.startswith("/") or len(webhook_url) > 2048:
            return f"X-Cortex-Webhook-URL must be an http:// or https:// URL (got {webhook_url[:100]!r})"
    return None


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while head:
        yield head.pop(0)  # drop each buffered chunk as it is written
    async for chunk in rest:
        yield chunk


def _too_large(api: RoutedApi) -> Response:
    return error_response(
        413,
        f"the body is larger than api {api.name}'s limit of {api.max_payload_size} bytes"
        " (raise async.max_payload_size in its configuration)",
    )


def _not_allowed(method: str, path: str, allow: str, hint: str) -> Response:
    return error_response(405, f"method {method} is not allowed on {path}: {hint}", headers={"Allow": allow})


def create_app(
    backends: Backends | None = None,
    *,
    settings: GatewaySettings | None = None,
    open_backends: Callable[[], Awaitable[Backends]] | None = None,
    metrics: GatewayMetrics | None = None,
    operator_url: str | None = None,
) -> Starlette:
    """The gateway as an ASGI app.

    Pass ``backends`` to serve backends the caller owns (tests, embedding), or ``open_backends``
    to open them when the server starts (in each worker process) and close them when it stops.
    ``GET /metrics`` serves ``metrics``, plus the operator's ``/metrics`` when ``operator_url`` is
    given (a local cluster's one scrape target; left out when the operator does not answer).
    """
    if (backends is None) == (open_backends is None):
        raise ValueError("pass exactly one of backends and open_backends")
    config = settings or GatewaySettings()
    holder: dict[str, Gateway] = {}
    if backends is not None:
        holder["gateway"] = Gateway(backends, config)

    async def handle(request: Request) -> Response:
        return await holder["gateway"].route(request)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    counters = metrics if metrics is not None else GatewayMetrics()

    async def get_metrics(request: Request) -> Response:
        own = counters.exposition()
        fetched = await fetch_all({"operator": f"{operator_url.rstrip('/')}/metrics"} if operator_url else {})
        body = merge([(own.decode(), {}), *((text, {}) for _, text in fetched)]) if fetched else own
        return Response(body, media_type=counters.content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = None
        if open_backends is not None:
            opened = await open_backends()
            holder["gateway"] = Gateway(opened, config)
        sweeper = asyncio.create_task(holder["gateway"].sweep_forever())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if opened is not None:
                await opened.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", get_metrics),
        Route("/{path:path}", handle, methods=list(_METHODS)),
    ]
    return _GatewayApp(handle, counters, routes=routes, lifespan=lifespan)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the gateway's own paths, never an API's
_OWN_PATHS = frozenset({"/healthz", "/metrics"})


class _GatewayApp(Starlette):
    """Starlette, with the API routes (every path but ``/healthz``) served past its router and middleware.

    Those layers cost a submission about a tenth of the gateway's time (DESIGN §8); what they did
    for these routes is done here: the method check, and a 500 for an unexpected error.
    """

    def __init__(
        self, handle: Callable[[Request], Awaitable[Response]], metrics: GatewayMetrics, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._handle = handle
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OWN_PATHS or scope["method"] not in _METHODS:
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self._handle(Request(scope, receive, send))
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            response = error_response(500, "internal error of the gateway")
        route, api = scope.get(ROUTE_KEY, ("other", ""))
        self._metrics.answered(api, route, response.status_code)
        await response(scope, receive, send)
