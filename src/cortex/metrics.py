"""Prometheus collectors of the operator, in a registry of their own (no process-wide state).

The queue gauges are Cortex's (reference §9.1), labelled ``api_name`` plus the constant
``api_kind="AsyncAPI"``: ``cortex_async_queued`` (waiting), ``cortex_async_active`` (leased by a
worker) and ``cortex_async_in_flight`` (their sum, what the autoscaler averages). The replica
gauges are cortex-async's: ``cortex_async_replicas_requested`` and ``cortex_async_replicas_ready``,
and so is ``cortex_async_oldest_queued_age_seconds{api_name}``: how long the oldest queued request
has waited for a worker (:attr:`cortex.queue.base.Depth.oldest_queued_age`; 0 with an empty queue).
The autoscaler loop sets them every tick; the operator serves them at ``GET /metrics``.

``cortex_async_webhook_deliveries_total{api_name, result}`` counts the webhook dispatcher's
attempts by what came of them: ``delivered``, ``retrying`` (it will be tried again) or ``failed``
(given up). The dispatcher runs in the operator's process and is handed these metrics.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from cortex.queue.base import Depth

#: the ``api_kind`` label of every series, as Cortex had it
API_KIND = "AsyncAPI"
_LABELS = ("api_name", "api_kind")


class OperatorMetrics:
    """The operator's gauges and the registry they are exposed from."""

    #: the ``Content-Type`` of :meth:`exposition`
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(name, documentation, _LABELS, registry=self.registry)

        self.queued = gauge("cortex_async_queued", "Requests waiting in the queue for a worker.")
        self.active = gauge("cortex_async_active", "Requests leased by a worker (being processed).")
        self.in_flight = gauge("cortex_async_in_flight", "Queued plus active requests.")
        self.replicas_requested = gauge("cortex_async_replicas_requested", "Replicas requested by the autoscaler.")
        self.replicas_ready = gauge("cortex_async_replicas_ready", "Replicas taking requests.")
        self.oldest_queued_age = Gauge(
            "cortex_async_oldest_queued_age_seconds",
            "Seconds the oldest queued request has waited for a worker (0 when none is queued).",
            ("api_name",),
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "cortex_async_webhook_deliveries",
            "Webhook delivery attempts, by result (delivered, retrying, failed).",
            ("api_name", "result"),
            registry=self.registry,
        )
        self._all = (self.queued, self.active, self.in_flight, self.replicas_requested, self.replicas_ready)

    def observe(self, api: str, depth: Depth, *, requested: int, ready: int) -> None:
        """Set ``api``'s gauges from one reading of its queue and its replicas."""
        self.queued.labels(api, API_KIND).set(depth.queued)
        self.active.labels(api, API_KIND).set(depth.in_flight)
        self.in_flight.labels(api, API_KIND).set(depth.total)
        self.replicas_requested.labels(api, API_KIND).set(requested)
        self.replicas_ready.labels(api, API_KIND).set(ready)
        self.oldest_queued_age.labels(api).set(depth.oldest_queued_age)

    def delivery(self, api: str, result: str) -> None:
        """One webhook delivery attempt of ``api`` ended ``result`` (delivered, retrying or failed)."""
        self.webhook_deliveries.labels(api, result).inc()

    def forget(self, api: str) -> None:
        """Remove ``api``'s series (it was deleted); unknown APIs are ignored."""
        for gauge in self._all:
            with contextlib.suppress(KeyError):  # never observed
                gauge.remove(api, API_KIND)
        with contextlib.suppress(KeyError):
            self.oldest_queued_age.remove(api)

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format."""
        return generate_latest(self.registry)
