"""Prometheus collectors of one gateway process, in a registry of their own.

``cortex_async_gateway_requests_total{api_name, route, code}`` counts every answer by the kind of
route (``submit``, ``batch``, ``status``, ``cancel``, ``events``, ``other``) rather than by path, whose values a client
could make unbounded; ``api_name`` is empty where no API was resolved.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

#: the route kinds the gateway counts answers by
ROUTES = ("submit", "batch", "status", "cancel", "events", "other")


class GatewayMetrics:
    """The gateway's counters and the registry they are exposed from."""

    #: the ``Content-Type`` of :meth:`exposition`
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cortex_async_gateway_requests",
            "Answers of the gateway, by route (submit, batch, status, cancel, events, other) and status code.",
            ("api_name", "route", "code"),
            registry=self.registry,
        )

    def answered(self, api: str, route: str, code: int) -> None:
        """The gateway answered ``code`` on a ``route`` of ``api`` ("" when none was resolved)."""
        self.requests.labels(api, route if route in ROUTES else "other", str(code)).inc()

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format."""
        return generate_latest(self.registry)
