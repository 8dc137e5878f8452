"""The gateway's routes (DESIGN §2): submit (one request, or a batch: :mod:`.batch`), status and result, health.

``POST /<endpoint>`` streams the body into the store (small bodies stay in the record, larger
ones go to a blob), stores the record and queues the id in one step of the data plane
(:mod:`cortex.dataplane`), and only then answers ``200 {"id"}``.
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

from cortex.auth import API_KEY_HEADER, SENSITIVE_HEADERS, Access, KeyRing, authorize, bearer
from cortex.backends import Backends
from cortex.bulkcancel import cancel_requests
from cortex.errors import BackendError
from cortex.exposition import fetch_all, merge
from cortex.gateway.answers import (
    error_response,
    log_context,
    not_allowed,
    render_record,
    shown,
    store_unavailable,
    too_large,
    unknown_request,
)
from cortex.gateway.asked import Asked, prefer_wait, submission_asked, wait_asked
from cortex.gateway.batch import BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, submit_batch
from cortex.gateway.body import BodyTimeout, PayloadTooLarge, limited, take_body
from cortex.gateway.directory import ApiDirectory, RoutedApi
from cortex.gateway.metrics import GatewayMetrics
from cortex.gateway.openapi import OPENAPI_PATH, openapi_document
from cortex.gateway.readiness import Readiness
from cortex.gateway.running import Running
from cortex.gateway.waiting import Waiting
from cortex.ids import is_valid_id, new_id
from cortex.requests import Duplicate, ErrorKind, NewRequest, Outcome, Status, now
from cortex.webhooks.events import schedule
from cortex.webhooks.targets import url_problem

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
#: not stored, unless the API forwards sensitive headers: then only the gateway's own key header is dropped
_DROPPED = _HOP_HEADERS | SENSITIVE_HEADERS
_DROPPED_FORWARDING = _HOP_HEADERS | {API_KEY_HEADER}
#: the route of each method on ``/<endpoint>/<id>``
_ID_ROUTES = {"GET": "status", "HEAD": "status", "DELETE": "cancel"}
#: ``POST /<endpoint>/purge``: the one call on a whole API
PURGE = "purge"
#: the answer to a request without a key says how to send one (RFC 6750)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cortex"'}


#: seconds a request body may stop arriving (nginx's client_body_timeout is 60 s, between two reads too)
DEFAULT_BODY_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Tuning of one gateway process."""

    #: bodies up to this size are kept in the record itself; larger ones stream to a blob
    inline_limit: int = 64 * 1024
    #: how often expired records and their blobs are swept (every gateway sweeps; it is idempotent)
    sweep_interval: float = 60.0
    #: seconds between two reads of the catalog by the gateway's refresher: a delete or a redeploy
    #: reaches this gateway within it (a new endpoint at once: its first request asks for a read)
    catalog_ttl: float = 2.0
    #: seconds a body may stop arriving before the submission is answered 408 (nothing is stored)
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    #: the keys every API accepts (each API adds its own ``async.api_keys``)
    keys: KeyRing = dataclasses.field(default_factory=KeyRing)
    #: refuse an ``X-Cortex-Webhook-URL`` whose host is or resolves to a non-public address
    refuse_private_webhooks: bool = False
    #: payloads one ``POST /<endpoint>/batch`` may hold
    max_batch_items: int = DEFAULT_MAX_ITEMS
    #: bytes the body of one ``POST /<endpoint>/batch`` may take (it is read whole before anything is stored)
    max_batch_bytes: int = DEFAULT_MAX_BYTES


#: what :meth:`Gateway.ping` reads: no such API or request exists
_PING_API, _PING_ID = "cortex-readyz", "readyz"

#: records removed per retention-sweep statement (the sweep repeats while batches are full)
SWEEP_BATCH = 1000


class Gateway:
    """The request handlers, bound to one process's backends."""

    def __init__(self, backends: Backends, settings: GatewaySettings) -> None:
        self.backends = backends
        self.settings = settings
        self.directory = ApiDirectory(backends.catalog, ttl=settings.catalog_ttl)
        #: ``Prefer: wait`` and the events stream
        self.waiting = Waiting(backends)
        #: the routes ``/<endpoint>/<name>`` of an API that are not a request's
        self._api_routes: dict[str, Callable[[Request, RoutedApi, str], Awaitable[Response]]] = {
            PURGE: self._purge_route,
            BATCH: self._batch_route,
        }

    async def route(self, request: Request) -> Response:
        """Dispatch ``/<endpoint>`` and ``/<endpoint>/<id>`` by method."""
        path: str = request.scope["path"]
        trimmed = path[:-1] if path.endswith("/") and len(path) > 1 else path
        prefix, _, request_id = trimmed.rpartition("/")
        # the table is in memory; only a path naming no API known waits for a fresh read (a deploy just stored)
        await self.directory.catch_up(trimmed, prefix, prefix.rpartition("/")[0])
        api = await self.directory.resolve(trimmed)
        if api is not None:
            if request.method == "POST":
                request.scope[ROUTE_KEY] = ("submit", api.name)
                denied, consumed = self._access(request, api)
                return denied or await self.submit(request, api, consumed=consumed)
            return not_allowed(request.method, path, "POST", f"use POST {api.endpoint} to submit a request")
        if request_id == "events" and request.method == "GET":
            events = await self._events_route(request, prefix)
            if events is not None:
                return events
        api = await self.directory.resolve(prefix) if prefix else None
        if api is None:
            if prefix and request.method in ("GET", "HEAD"):
                return await self.status_after_delete(request, prefix, request_id, path)
            return error_response(404, f"no API is deployed at {shown(path)}")
        on_api = self._api_routes.get(request_id)  # purge, batch: never an id, those are 26 characters
        if on_api is not None:
            return await on_api(request, api, path)
        route = _ID_ROUTES.get(request.method)
        if route is None:
            return not_allowed(request.method, path, "GET, DELETE", f"use GET {api.endpoint}/<id> to read a request")
        request.scope[ROUTE_KEY] = (route, api.name)
        denied, _ = self._access(request, api)
        if denied is not None:
            return denied
        if route == "status":
            wait = wait_asked(request)
            if isinstance(wait, Response):
                return wait
            return await self.status(api, request_id, wait=wait)
        return await self.cancel(api, request_id)

    async def _events_route(self, request: Request, prefix: str) -> Response | None:
        """``GET /<endpoint>/<id>/events`` when ``prefix`` is ``/<endpoint>/<id>`` of a deployed API, else None."""
        endpoint, _, request_id = prefix.rpartition("/")
        api = await self.directory.resolve(endpoint) if endpoint else None
        if api is None or not is_valid_id(request_id):
            return None
        request.scope[ROUTE_KEY] = ("events", api.name)
        denied, _ = self._access(request, api)
        return denied or await self.waiting.events(api, request_id)

    def _access(self, request: Request, api: RoutedApi) -> tuple[Response | None, frozenset[str]]:
        """None and the header the key came in (never stored), or the 401 or 403 to answer.

        The key is taken from ``X-Cortex-API-Key``, else from ``Authorization: Bearer``.
        """
        presented = request.headers.get(API_KEY_HEADER)
        consumed = frozenset({API_KEY_HEADER})
        token = bearer(request.headers.get("authorization"))
        if presented is None:
            presented, consumed = token, frozenset({"authorization"})
        elif token is not None and authorize(self.settings.keys, api.api_keys, token) is Access.GRANTED:
            consumed |= {"authorization"}  # a gateway key in both: neither header is the user server's
        access = authorize(self.settings.keys, api.api_keys, presented)
        if access is Access.MISSING:
            how = "send it as the header 'Authorization: Bearer <key>' (or 'X-Cortex-API-Key: <key>')"
            if request.headers.get("authorization") is not None:
                how = "the Authorization header must be 'Bearer <key>' (or send 'X-Cortex-API-Key: <key>')"
            return error_response(401, f"api {api.name} needs an API key: {how}", headers=_CHALLENGE), consumed
        if access is Access.WRONG:
            message = (
                f"the API key is not accepted by api {api.name}: check it, or use a key of the cluster"
                " (cortex cluster up --api-key) or of the API (async.api_keys)"
            )
            return error_response(403, message), consumed
        return None, consumed if access is Access.GRANTED else frozenset()

    async def submit(self, request: Request, api: RoutedApi, *, consumed: frozenset[str] = frozenset()) -> Response:
        """Store and queue one request; 200 ``{"id"}`` only once both are durable.

        Sensitive headers (``Authorization``, ``Cookie``, ...) are not stored unless the API forwards
        them; the header that carried the gateway's key (``consumed``) never is.
        """
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > api.max_payload_size:
            return too_large(api)
        asked = await self._asked(request)
        if isinstance(asked, Response):
            return asked
        key, webhook_url, priority = asked.idempotency_key, asked.webhook_url, asked.priority
        wait = prefer_wait(request)
        request_id = new_id()
        digest = hashlib.sha256() if key is not None else None
        stream = limited(request.stream(), api.max_payload_size, digest, idle=self.settings.body_timeout)
        try:
            payload, payload_ref = await take_body(
                self.backends.blobs, request_id, stream, inline_limit=self.settings.inline_limit
            )
        except PayloadTooLarge:
            return too_large(api)
        except ClientDisconnect:
            return error_response(400, "the client closed the connection before the body was complete")
        except BodyTimeout:
            message = f"the body stopped arriving for {self.settings.body_timeout:g}s; nothing was stored"
            return error_response(408, message, headers={"Connection": "close"})
        created = now()
        record = NewRequest(
            id=request_id,
            api=api.name,
            created_at=created,
            expires_at=created + api.retention,
            headers=_stored_headers(request, api, consumed),
            payload=payload,
            payload_ref=payload_ref,
            idempotency_key=key,
            body_digest=None if digest is None else digest.hexdigest(),
            webhook_url=webhook_url,
            priority=priority,
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
        if wait is None:
            return Response(b'{"id":"' + request_id.encode() + b'"}', media_type="application/json")
        return await self.waiting.submitted(api, request_id, wait)

    async def _asked(self, request: Request) -> Asked | Response:
        """What a submission asks beyond its body, or the 400 of a bad header (or of a refused webhook URL)."""
        asked = submission_asked(request.headers)
        if isinstance(asked, str):
            return error_response(400, asked)
        if asked.webhook_url is not None and self.settings.refuse_private_webhooks:
            refused = await url_problem(asked.webhook_url)
            if refused is not None:
                return error_response(400, f"X-Cortex-Webhook-URL refused: {refused}")
        return asked

    async def _batch_route(self, request: Request, api: RoutedApi, path: str) -> Response:
        """``POST /<endpoint>/batch``: many payloads, all stored or none (:mod:`cortex.gateway.batch`)."""
        if request.method != "POST":
            return not_allowed(request.method, path, "POST", f"use POST {api.endpoint}/batch to submit a batch")
        request.scope[ROUTE_KEY] = ("batch", api.name)
        denied, consumed = self._access(request, api)
        if denied is not None:
            return denied
        asked = await self._asked(request)
        if isinstance(asked, Response):
            return asked
        settings = self.settings
        return await submit_batch(
            self.backends,
            request,
            api,
            asked,
            _stored_headers(request, api, consumed),
            max_items=settings.max_batch_items,
            max_bytes=settings.max_batch_bytes,
            inline_limit=settings.inline_limit,
            body_timeout=settings.body_timeout,
        )

    async def _store(self, record: NewRequest) -> Response | Duplicate | None:
        """Store the record and queue its id in one step: None once both are durable, the
        :class:`Duplicate` holding its idempotency key (nothing stored), or the error to answer.

        A failed step may still have happened (a timeout cannot tell), and then both halves did:
        so the payload blob stays (the record may name it), and the answer says to send again with
        the same ``Idempotency-Key``, which finds the request queued or queues it.
        """
        try:
            return await self.backends.plane.submit(record)
        except BackendError as exc:
            log.error(
                "could not store request %s of %s: %s",
                record.id,
                record.api,
                exc,
                extra=log_context(record.api, record.id, "store"),
            )
            return error_response(
                503,
                "the request could not be stored and queued; send it again (with the same Idempotency-Key,"
                " it is never queued twice)",
            )

    async def status(self, api: RoutedApi, request_id: str, *, wait: float | None = None) -> Response:
        """``GET /<endpoint>/<id>``: the record as JSON, with the result bytes spliced in.

        With ``wait`` (``Prefer: wait=N`` or ``?wait=N``), answered once the status is terminal, or
        after ``wait`` seconds as it then stands.
        """
        record = None
        if is_valid_id(request_id):
            try:
                if wait is None:
                    record = await self.backends.records.get(api.name, request_id, now=now())
                else:
                    record = await self.waiting.settled(api.name, request_id, wait)
            except BackendError as exc:
                return store_unavailable(api.name, request_id, "read", exc)
        if record is None:
            return unknown_request(api, request_id)
        applied = None if wait is None else {"Preference-Applied": f"wait={wait:g}"}
        return Response(render_record(record), media_type="application/json", headers=applied)

    async def status_after_delete(self, request: Request, prefix: str, request_id: str, path: str) -> Response:
        """``GET /<name>/<id>`` once the API is deleted: its requests stay readable until they expire.

        The records are kept by API name, so the last segment of the path names the API (its
        default endpoint ``/<name>``); an API of that name that is deployed is not read here. Only
        the cluster's keys are checked: the API's own went with its spec, and the id itself is
        unguessable.
        """
        presented = request.headers.get(API_KEY_HEADER) or bearer(request.headers.get("authorization"))
        access = authorize(self.settings.keys, frozenset(), presented)
        if access is Access.MISSING:
            return error_response(401, "a key of the cluster is needed to read this request", headers=_CHALLENGE)
        if access is Access.WRONG:
            return error_response(403, "the API key is not accepted by this cluster")
        name = prefix.rsplit("/", 1)[-1]
        record = None
        # a deployed API is read at its own endpoint only, where its own keys are checked
        if is_valid_id(request_id) and self.directory.named(name) is None:
            try:
                record = await self.backends.records.get(name, request_id, now=now())
            except BackendError as exc:
                return store_unavailable(name, request_id, "read", exc)
        if record is None:
            return error_response(404, f"no API is deployed at {shown(path)}")
        return Response(render_record(record), media_type="application/json")

    async def _purge_route(self, request: Request, api: RoutedApi, path: str) -> Response:
        """``/<endpoint>/purge``: POST only, with an operator-level key."""
        if request.method != "POST":
            return not_allowed(request.method, path, "POST", f"use POST {api.endpoint}/purge to purge its queue")
        request.scope[ROUTE_KEY] = ("purge", api.name)
        return self._operator_access(request, api) or await self.purge(api)

    def _operator_access(self, request: Request, api: RoutedApi) -> Response | None:
        """None, or the 401 or 403 to answer a call on a whole API (a purge).

        The gateway knows no operator token: the operator-level key it has is a key of the cluster
        (``cortex cluster up --api-key``), which a purge needs whenever the cluster has one; an API's
        own keys and the replicas' internal key are not enough then. A cluster without keys asks for
        one of the API's own keys when it has some, and is open otherwise, as its other routes are.
        """
        presented = request.headers.get(API_KEY_HEADER) or bearer(request.headers.get("authorization"))
        ring = KeyRing(cluster=self.settings.keys.cluster)
        access = authorize(ring, frozenset() if ring.cluster else frozenset(api.api_keys), presented)
        which = "a key of the cluster" if ring.cluster else f"a key of api {api.name}"
        if access is Access.MISSING:
            return error_response(401, f"purging api {api.name} needs {which}", headers=_CHALLENGE)
        if access is Access.WRONG:
            return error_response(403, f"purging api {api.name} needs {which}; the key given is not one")
        return None

    async def purge(self, api: RoutedApi) -> Response:
        """``POST /<endpoint>/purge``: cancel every queued request of the API (``error.kind`` ``purged``),
        each with its ``cancelled`` webhook.

        Running requests keep running; other APIs are untouched. Answers ``{"cancelled": N}``.
        """
        reason = f"the queue of api {api.name} was purged before this request ran"
        try:
            count = await cancel_requests(
                self.backends.queue,
                self.backends.records,
                api.name,
                api.spec,
                kind=ErrorKind.PURGED,
                reason=reason,
                queued_only=True,
                on_cancelled=functools.partial(self._purged, api.name),
            )
        except BackendError as exc:
            log.error("could not purge %s: %s", api.name, exc, extra=log_context(api.name, "", "purge"))
            return error_response(503, "the request store is unavailable; try again (a purge can be repeated)")
        log.info("purged %s: cancelled %d queued requests", api.name, count, extra=log_context(api.name, "", "purge"))
        return Response(json.dumps({"cancelled": count}).encode(), media_type="application/json")

    async def _purged(self, api: str, request_ids: list[str]) -> None:
        """Announce one cancelled batch of a purge as it ends (no id list is kept, so memory does not grow)."""
        await self._announce(api, request_ids)

    async def cancel(self, api: RoutedApi, request_id: str) -> Response:
        """``DELETE /<endpoint>/<id>``: a queued request never runs; a running one has its call aborted.

        Cancelling a cancelled request again is harmless (200); cancelling a finished one is 409.
        """
        records = self.backends.records
        try:
            record = await records.get(api.name, request_id, now=now()) if is_valid_id(request_id) else None
            if record is None:
                return unknown_request(api, request_id)
            if not record.status.terminal:
                await schedule(self.backends.queue, api.spec, api.name, request_id, record.webhook_url, "cancelled")
                if await records.finish(api.name, request_id, Outcome(Status.CANCELLED), now=now()):
                    await self._announce(api.name, [request_id])
                    # the dequeuer holding it (if any) sees the status and aborts the upstream call
                    await self.backends.queue.remove(api.name, request_id)
                record = await records.get(api.name, request_id, now=now())
        except BackendError as exc:
            return store_unavailable(api.name, request_id, "cancel", exc)
        if record is None:
            return unknown_request(api, request_id)
        if record.status != Status.CANCELLED:
            body = json.dumps(
                {"error": f"request {request_id} is already {record.status.value}", "status": record.status.value}
            )
            return Response(body.encode(), status_code=409, media_type="application/json")
        return Response(render_record(record), media_type="application/json")

    async def _announce(self, api: str, ids: list[str]) -> None:
        """Wake the waiters of ``ids`` (cancelled here): this process's now, the other gateways' by notification.

        The notification is best effort: should it fail, the other gateways' waiters read at their deadline.
        """
        for request_id in ids:
            self.backends.plane.changes.changed(request_id)
        try:
            await self.backends.plane.announce(ids)
        except BackendError as exc:
            log.warning("could not announce %d cancelled request(s) of %s to other gateways: %s", len(ids), api, exc)

    async def ping(self) -> None:
        """Read one record by id (none is found): the cheapest call that needs the backend to answer.

        Raises:
            BackendError: the backend did not answer (within its deadline).
        """
        await self.backends.records.get(_PING_API, _PING_ID, now=now())

    async def sweep_forever(self) -> None:
        """Remove expired records and their blobs, every ``sweep_interval`` seconds."""
        while True:
            try:
                await self.sweep_once()
            except BackendError as exc:
                log.warning("retention sweep failed (will retry): %s", exc)
            await asyncio.sleep(self.settings.sweep_interval)

    async def sweep_once(self) -> int:
        """Sweep until nothing expired is left, deleting the blobs each batch hands over; the records removed.

        A batch hands over the blobs of expired records and of terminal ones; it is repeated while
        either is full, so no rate of requests outgrows the sweep.
        """
        removed = 0
        while True:
            swept = await self.backends.records.sweep(now=now(), limit=SWEEP_BATCH)
            for key in swept.blob_keys:
                await self.backends.blobs.delete(key)
            removed += swept.deleted
            if swept.deleted < SWEEP_BATCH and len(swept.blob_keys) < SWEEP_BATCH:
                return removed


def _stored_headers(request: Request, api: RoutedApi, consumed: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The headers a submission is stored with: not the hop's, nor (unless the API forwards them) sensitive ones,
    and never the one that carried the gateway's key (``consumed``)."""
    dropped = _DROPPED_FORWARDING | consumed if api.forward_sensitive_headers else _DROPPED
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() not in dropped
    )


def _refused_method(method: str, path: str) -> Response | None:
    """The 405 of a method the gateway answers on no path like ``path``, or None."""
    if path in _OWN_PATHS:
        return None if method in ("GET", "HEAD") else not_allowed(method, path, "GET, HEAD", f"{path} answers GET")
    if method not in _METHODS:
        return not_allowed(method, path, "GET, POST, DELETE", "the gateway answers POST, GET and DELETE")
    return None


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
    running = Running(lambda opened: Gateway(opened, config), backends=backends, open_backends=open_backends)
    readiness = Readiness(lambda: running.gateway.ping())

    async def handle(request: Request) -> Response:
        if not running.started:  # logged once, when it started; then by /readyz
            return error_response(503, "the gateway has not reached its backend yet; try again shortly")
        return await running.gateway.route(request)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        problem = await readiness.check()
        if problem is None:
            return PlainTextResponse("ready")
        # open without a key: the backend's address and error stay in the gateway's log
        return error_response(503, "not ready: the gateway cannot reach its backend; try again shortly")

    counters = metrics if metrics is not None else GatewayMetrics()

    async def get_metrics(request: Request) -> Response:
        own = counters.exposition()
        fetched = await fetch_all({"operator": f"{operator_url.rstrip('/')}/metrics"} if operator_url else {})
        body = merge([(own.decode(), {}), *((text, {}) for _, text in fetched)]) if fetched else own
        return Response(body, media_type=counters.content_type)

    document = json.dumps(openapi_document(), separators=(",", ":")).encode()

    async def get_openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await running.start()
        try:
            yield
        finally:
            await running.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", get_metrics),
        Route(OPENAPI_PATH, get_openapi),
        Route("/{path:path}", handle, methods=list(_METHODS)),
    ]
    return _GatewayApp(handle, counters, routes=routes, lifespan=lifespan)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the gateway's own paths, never an API's
_OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", OPENAPI_PATH})


class _GatewayApp(Starlette):
    """Starlette, with the API routes (every path but ``/healthz``) served past its router and middleware.

    Those layers cost a submission about a tenth of the gateway's time (DESIGN §8); what they did
    for these routes is done here: the method check, a 503 for a backend error no route handled
    (an outage: the catalog unread, a blob unwritten), and a 500 for an unexpected error.
    """

    def __init__(
        self, handle: Callable[[Request], Awaitable[Response]], metrics: GatewayMetrics, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._handle = handle
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = _refused_method(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if scope["type"] != "http" or (refused is None and scope["path"] in _OWN_PATHS):
            await super().__call__(scope, receive, send)
            return
        try:
            response = refused or await self._handle(Request(scope, receive, send))
        except BackendError as exc:  # an outage: a 503 to try again, and one line, not a traceback per request
            log.error("answered 503 to %s %s: %s", scope["method"], scope["path"], exc)
            response = error_response(503, "the gateway cannot reach its backend; try again shortly")
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            response = error_response(500, "internal error of the gateway")
        route, api = scope.get(ROUTE_KEY, ("other", ""))
        self._metrics.answered(api, route, response.status_code)
        await response(scope, receive, send)
