"""A dequeuer process: open the backends, read the API's spec, serve the admin port, run, drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal

from aiohttp import web

from cortex.backends import BackendUrls, open_backends
from cortex.dequeuer.worker import Dequeuer, DequeuerSettings
from cortex.errors import NotFound
from cortex.spec import ApiSpec

log = logging.getLogger(__name__)


#: how long ``/drain`` waits for this replica's stop before answering that it is not stopping
DRAIN_STOP_WAIT = 2.0


def admin_app(
    dequeuer: Dequeuer, stop: asyncio.Event | None = None, *, drain_wait: float = DRAIN_STOP_WAIT
) -> web.Application:
    """The admin port: ``/healthz`` reflects the readiness probes (200 healthy, 500 unhealthy); ``/metrics``.

    ``/drain`` is the user containers' ``preStop`` hook on Kubernetes, where every container of a
    removed pod gets SIGTERM at once: it answers once ``stop`` is set and no request is in flight,
    so the user's server outlives the requests it is serving. When ``stop`` is not set within
    ``drain_wait`` seconds (a user container restarting alone, after a failed liveness
    probe), it answers at once.
    """

    async def healthz(request: web.Request) -> web.Response:
        if dequeuer.prober.ready:
            return web.Response(text="healthy")
        return web.Response(status=500, text="unhealthy")

    async def status(request: web.Request) -> web.Response:
        body = {"api": dequeuer.spec.name, "in_flight": dequeuer.in_flight, "probes": dequeuer.prober.status()}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=dequeuer.metrics.exposition(), headers={"Content-Type": dequeuer.metrics.content_type})

    async def drain(request: web.Request) -> web.Response:
        if stop is None:
            return web.Response(text="not stopping")
        try:
            await asyncio.wait_for(stop.wait(), drain_wait)
        except TimeoutError:
            return web.Response(text="not stopping")
        while dequeuer.in_flight:  # the kubelet's grace period bounds this wait
            await asyncio.sleep(0.1)
        return web.Response(text="drained")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/drain", drain)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(
    api: str,
    urls: BackendUrls,
    settings: DequeuerSettings,
    *,
    admin_host: str = "127.0.0.1",
    admin_port: int | None = None,
) -> None:
    """Run the dequeuer of ``api`` until SIGTERM or SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    backends = await open_backends(urls)
    runner: web.AppRunner | None = None
    try:
        entry = await backends.catalog.get_api(api)
        if entry is None:
            raise NotFound(f"api {api} is not deployed on this cluster (deploy it first: cortex deploy)")
        dequeuer = Dequeuer(ApiSpec.from_dict(entry.spec), backends, settings)
        if admin_port is not None:
            runner = web.AppRunner(admin_app(dequeuer, stop), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, admin_host, admin_port).start()
        log.info("dequeuer for %s forwarding to %s", api, dequeuer.url)
        await dequeuer.run(stop)
        log.info("dequeuer for %s stopped", api)
    finally:
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(Exception):
            await backends.aclose()


def run(
    api: str,
    urls: BackendUrls,
    settings: DequeuerSettings,
    *,
    admin_host: str = "127.0.0.1",
    admin_port: int | None = None,
) -> None:
    """Run :func:`serve` on uvloop until it stops; Ctrl-C ends it quietly.

    Raises:
        CortexError: the backends cannot be opened or the API is not deployed.
    """
    import uvloop  # only here: importing the module must not need an event loop policy

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(api, urls, settings, admin_host=admin_host, admin_port=admin_port))
