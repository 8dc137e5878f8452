"""A dequeuer process: open the backends, read the API's spec, serve the admin port, run, drain.

A dequeuer a runtime starts serves one version of its API: a redeploy replaces its replica. One
started by hand (``cortex dequeuer``, on a host of its own) has nobody to replace it, so it
follows its API instead: it looks at the catalog every :data:`FOLLOW_INTERVAL` seconds, and on a
redeploy drains and goes on with the new spec (``max_concurrency``, probes, timeouts); on a
delete it drains and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from cortex.backends import Backends, BackendUrls, open_backends
from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.dequeuer.progress import MAX_PROGRESS_BYTES, ProgressProblem, progress_body
from cortex.dequeuer.worker import Dequeuer, DequeuerSettings
from cortex.errors import BackendError, NotFound
from cortex.reaching import open_when_reachable
from cortex.spec import ApiSpec
from cortex.store.base import ApiEntry, Catalog

log = logging.getLogger(__name__)


#: how long ``/drain`` waits for this replica's stop before answering that it is not stopping
DRAIN_STOP_WAIT = 2.0
#: how often a dequeuer that follows its API looks for a redeploy or a delete
FOLLOW_INTERVAL = 5.0


def admin_app(
    dequeuer: Dequeuer | Callable[[], Dequeuer | None],
    stop: asyncio.Event | None = None,
    *,
    drain_wait: float = DRAIN_STOP_WAIT,
    spec_id: Callable[[], str] | None = None,
) -> web.Application:
    """The admin port: ``/healthz`` reflects the readiness probes (200 healthy, 500 unhealthy); ``/metrics``.

    ``POST /progress`` is the user server's: the progress of the request it runs (named by
    ``X-Cortex-Request-ID``), any JSON value up to :data:`MAX_PROGRESS_BYTES`, answered 202 once taken
    (it is stored within :data:`~cortex.dequeuer.progress.PROGRESS_INTERVAL`); 404 for a request this
    replica is not running, 400 for a body that is not JSON, 413 for one too large.

    ``/drain`` is the user containers' ``preStop`` hook on Kubernetes, where every container of a
    removed pod gets SIGTERM at once: it answers once ``stop`` is set and no request is in flight,
    so the user's server outlives the requests it is serving. When ``stop`` is not set within
    ``drain_wait`` seconds (a user container restarting alone, after a failed liveness
    probe), it answers at once. ``dequeuer`` may be a function giving the current one (a dequeuer
    that follows its API's redeploys), and ``spec_id`` one giving the id of the spec it serves
    (in ``/status``). Until there is a dequeuer (None: its backend has not answered since the
    process started), every route but ``/drain`` answers 503.
    """

    def maybe() -> Dequeuer | None:
        return dequeuer if isinstance(dequeuer, Dequeuer) else dequeuer()

    def current() -> Dequeuer:
        serving = maybe()
        assert serving is not None, "guarded by _until_reached"
        return serving

    async def healthz(request: web.Request) -> web.Response:
        if current().prober.ready:
            return web.Response(text="healthy")
        return web.Response(status=500, text="unhealthy")

    async def status(request: web.Request) -> web.Response:
        serving = current()
        body = {"api": serving.spec.name, "in_flight": serving.in_flight, "probes": serving.prober.status()}
        if spec_id is not None:
            body["spec_id"] = spec_id()
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        counters = current().metrics
        return web.Response(body=counters.exposition(), headers={"Content-Type": counters.content_type})

    async def drain(request: web.Request) -> web.Response:
        if stop is None:
            return web.Response(text="not stopping")
        try:
            await asyncio.wait_for(stop.wait(), drain_wait)
        except TimeoutError:
            return web.Response(text="not stopping")
        while (serving := maybe()) is not None and serving.in_flight:  # the kubelet's grace period bounds this
            await asyncio.sleep(0.1)
        return web.Response(text="drained")

    app = web.Application(middlewares=[_until_reached(maybe)])
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/progress", _progress_route(current))
    app.router.add_get("/drain", drain)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


def _progress_route(current: Callable[[], Dequeuer]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``POST /progress``: the user server's report of the request it runs (see :func:`admin_app`)."""

    async def progress(request: web.Request) -> web.Response:
        request_id = request.headers.get("X-Cortex-Request-ID", "")
        if not request_id:
            return _refused(400, "send the id of the running request as the header X-Cortex-Request-ID")
        declared = request.content_length
        if declared is not None and declared > MAX_PROGRESS_BYTES:
            return _refused(413, f"the progress body is {declared} bytes, over the {MAX_PROGRESS_BYTES} accepted")
        body = b""  # read to one byte past the limit at most, whatever the chunks
        while len(body) <= MAX_PROGRESS_BYTES and (
            chunk := await request.content.read(MAX_PROGRESS_BYTES + 1 - len(body))
        ):
            body += chunk
        if len(body) > MAX_PROGRESS_BYTES:
            return _refused(413, f"the progress body is larger than {MAX_PROGRESS_BYTES} bytes, the most accepted")
        try:
            value = progress_body(body)
        except ProgressProblem as exc:
            return _refused(400, str(exc))
        if not current().report_progress(request_id, value):
            return _refused(404, f"request {request_id[:64]!r} is not running on this replica")
        return web.Response(status=202, text=json.dumps({"id": request_id}), content_type="application/json")

    return progress


def _until_reached(maybe: Callable[[], Dequeuer | None]) -> Any:
    """The admin port's middleware: 503 on every route but ``/drain`` while there is no dequeuer yet."""

    @web.middleware
    async def waiting(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        if maybe() is None and request.path != "/drain":
            return web.Response(status=503, text="unhealthy: waiting for the backend to answer")
        return await handler(request)

    return waiting


def _refused(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")


async def serve(
    api: str,
    urls: BackendUrls,
    settings: DequeuerSettings,
    *,
    admin_host: str = "127.0.0.1",
    admin_port: int | None = None,
    follow: bool = False,
    follow_interval: float = FOLLOW_INTERVAL,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the dequeuer of ``api`` until SIGTERM or SIGINT (or ``stop``), then drain and return.

    With ``follow``, it also follows the API's redeploys and returns once the API is deleted.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving: list[_Serving] = []
    runner: web.AppRunner | None = None
    if admin_port is not None:  # up before the backend: its /healthz says the replica waits for it
        app = admin_app(lambda: serving[0].dequeuer if serving else None, stop, spec_id=lambda: serving[0].spec_id)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, admin_host, admin_port).start()
    backends: Backends | None = None
    try:
        backends = await _reach(urls, api, stop)
        if backends is None:
            return
        entry = await backends.catalog.get_api(api)
        if entry is None:
            raise NotFound(f"api {api} is not deployed on this cluster (deploy it first: cortex deploy)")
        metrics = DequeuerMetrics()  # one set of counters across the versions followed
        serving.append(_dequeuer(entry, backends, settings, metrics))
        log.info("dequeuer for %s forwarding to %s", api, serving[0].dequeuer.url)
        while True:
            watch = _watch(backends.catalog, api, serving[0].spec_id, follow_interval) if follow else None
            changed = await _run_until(serving[0].dequeuer, stop, watch)
            if changed is None:
                break
            if changed.entry is None:
                log.info("api %s was deleted: this dequeuer stops", api)
                break
            serving[0] = _dequeuer(changed.entry, backends, settings, metrics)
            log.info("api %s was redeployed: going on with its new spec (%s)", api, changed.entry.spec_id)
        log.info("dequeuer for %s stopped", api)
    finally:
        if runner is not None:
            await runner.cleanup()
        if backends is not None:
            with contextlib.suppress(Exception):
                await backends.aclose()


async def _reach(urls: BackendUrls, api: str, stop: asyncio.Event) -> Backends | None:
    """The backends, opened once they answer (:mod:`cortex.reaching`); None on ``stop`` before that.

    Raises:
        BackendError: a URL a retry cannot fix (unknown scheme, refused login, missing driver).
    """
    opening = asyncio.create_task(open_when_reachable(lambda: open_backends(urls), role=f"dequeuer of {api}"))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({opening, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not opening.done():
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        log.info("dequeuer for %s stopped before its backend answered", api)
        return None
    return opening.result()


@dataclasses.dataclass(frozen=True, slots=True)
class _Serving:
    """The dequeuer running now, and the id of the spec it was made from."""

    dequeuer: Dequeuer
    spec_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Changed:
    """What the catalog now holds for a followed API: its new entry, or None once it is deleted."""

    entry: ApiEntry | None


def _dequeuer(entry: ApiEntry, backends: Backends, settings: DequeuerSettings, metrics: DequeuerMetrics) -> _Serving:
    return _Serving(Dequeuer(ApiSpec.from_dict(entry.spec), backends, settings, metrics), entry.spec_id)


async def _watch(catalog: Catalog, api: str, spec_id: str, interval: float) -> _Changed:
    """Return once ``api`` is redeployed (another spec id) or deleted; a failed look is tried again."""
    while True:
        await asyncio.sleep(interval)
        try:
            entry = await catalog.get_api(api)
        except BackendError as exc:
            log.warning("could not look for a redeploy of %s (will look again): %s", api, exc)
            continue
        if entry is None or entry.spec_id != spec_id:
            return _Changed(entry)


async def _run_until(
    dequeuer: Dequeuer, stop: asyncio.Event, watch: Coroutine[Any, Any, _Changed] | None
) -> _Changed | None:
    """Run ``dequeuer`` until ``stop`` (None) or until ``watch`` sees a change (which it returns), then drain."""
    own_stop = asyncio.Event()
    running = asyncio.create_task(dequeuer.run(own_stop))
    waits: set[asyncio.Task[Any]] = {asyncio.create_task(stop.wait()), running}
    watching = asyncio.create_task(watch) if watch is not None else None
    if watching is not None:
        waits.add(watching)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        own_stop.set()
        for task in waits - {running}:
            task.cancel()
        await running  # drains: running requests finish within the grace period
    if watching is not None and watching.done() and not watching.cancelled():
        return watching.result()
    return None


def run(
    api: str,
    urls: BackendUrls,
    settings: DequeuerSettings,
    *,
    admin_host: str = "127.0.0.1",
    admin_port: int | None = None,
    follow: bool = False,
) -> None:
    """Run :func:`serve` on uvloop until it stops; Ctrl-C ends it quietly.

    Raises:
        CortexError: the backends cannot be opened or the API is not deployed.
    """
    import uvloop  # only here: importing the module must not need an event loop policy

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(api, urls, settings, admin_host=admin_host, admin_port=admin_port, follow=follow))
