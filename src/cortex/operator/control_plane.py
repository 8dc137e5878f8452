"""The control plane, wherever replicas run: the operator's API, the autoscaler, webhook delivery, the status page.

The local cluster (:mod:`cortex.operator.cluster`) runs it beside a supervised gateway and the
local runtime; on Kubernetes, ``cortex operator`` runs it in its own pod with the Kubernetes
runtime (:mod:`cortex.operator.incluster`). Both hand it open backends and a started runtime,
and close those themselves after it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn

from cortex.autoscaler import Autoscaler, ScalingEvents
from cortex.backends import Backends
from cortex.metrics import OperatorMetrics
from cortex.operator.app import create_operator_app
from cortex.operator.history import History
from cortex.operator.service import Operator
from cortex.operator.status_feed import StatusFeed
from cortex.operator.status_page import StatusPage
from cortex.runtime.base import Runtime
from cortex.webhooks.dispatcher import WebhookDispatcher

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ControlPlaneSettings:
    """Where the operator listens and how the control plane behaves."""

    host: str
    port: int
    gateway_url: str
    #: the token the operator requires (None: none)
    operator_token: str | None = dataclasses.field(default=None, repr=False)
    #: a token that may only read (GET): the one the API replicas get (None: none)
    read_token: str | None = dataclasses.field(default=None, repr=False)
    #: seconds between two autoscaler ticks (Cortex: 10)
    autoscaler_tick: float = 10.0
    refuse_private_webhooks: bool = False
    #: tick at once when work arrives for an API at zero replicas (:mod:`cortex.autoscaler.sleepers`);
    #: off only for the benchmarks, whose APIs must keep the replicas they were deployed with
    wake_sleeping: bool = True


async def serve_control_plane(
    settings: ControlPlaneSettings,
    backends: Backends,
    runtime: Runtime,
    *,
    info: dict[str, Any],
    peers: Callable[[], Mapping[str, str]],
    stop: asyncio.Event,
    on_serving: Callable[[], None] = lambda: None,
) -> None:
    """Serve until ``stop`` is set (or the operator cannot serve: that error is raised).

    ``peers`` names the replicas' ``/metrics`` URLs; ``on_serving`` runs once the operator is up.
    """
    events, metrics = ScalingEvents(), OperatorMetrics()
    history = History()  # the status page's last hour, fed by every autoscaler tick
    feed = StatusFeed(history, peers)
    autoscaler = Autoscaler(
        backends.catalog,
        backends.queue,
        runtime,
        interval=settings.autoscaler_tick,
        events=events,
        metrics=metrics,
        on_tick=feed.on_tick,
        wake_sleeping=settings.wake_sleeping,
    )
    operator = Operator(
        backends.catalog,
        runtime,
        gateway_url=settings.gateway_url,
        scaling_events=events,
        queue=backends.queue,
        records=backends.records,
        on_deployed=autoscaler.nudge,
    )
    webhooks = WebhookDispatcher(backends, metrics=metrics, refuse_private=settings.refuse_private_webhooks)
    webhooks_stop = asyncio.Event()
    delivering: asyncio.Task[None] | None = None
    status = StatusPage(operator, backends.queue, backends.records, history)
    app = create_operator_app(
        operator,
        info,
        metrics,
        peers=peers,
        token=settings.operator_token,
        read_token=settings.read_token,
        status=status,
    )
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False, lifespan="off"
    )
    server = _OperatorServer(config)
    try:
        await operator.restore()
        autoscaler.start()
        delivering = asyncio.create_task(webhooks.run(webhooks_stop))
        serving = asyncio.create_task(server.serve())
        await asyncio.sleep(0)
        on_serving()
        await asyncio.wait({serving, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # the operator could not serve (port taken): say why
        log.info("control plane stopping")
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
    finally:
        await autoscaler.aclose()  # before the runtime closes: a tick must not start replicas a drain would miss
        await feed.aclose()
        webhooks_stop.set()
        if delivering is not None:
            with contextlib.suppress(Exception):
                await delivering


class _OperatorServer(uvicorn.Server):
    """uvicorn without its signal handling: the caller owns SIGTERM, to drain before it exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
