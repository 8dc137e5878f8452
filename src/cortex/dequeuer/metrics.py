"""Prometheus collectors of one dequeuer, in a registry of their own, served on its admin port.

Cortex's ``cortex_async_request_count{status_code}`` and ``cortex_async_latency`` (reference
§9.1), counted once per answer of the user server (no answer, no sample, as in Cortex), plus the
time a request waited in the queue and its terminal outcome. Cortex's latency histogram stopped at
10 s, so every long job fell into ``+Inf`` and its quantiles were meaningless: these buckets run
from 5 ms to 6 h.

``prometheus_client`` exposes a counter with the ``_total`` suffix, so Cortex's request count
is scraped as ``cortex_async_request_count_total``.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from cortex.metrics import API_KIND

#: seconds, from a fast answer to a job of a quarter of a day
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0,
)  # fmt: skip


class DequeuerMetrics:
    """One dequeuer's counters and histograms and the registry they are exposed from."""

    #: the ``Content-Type`` of :meth:`exposition`
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_count = Counter(
            "cortex_async_request_count",
            "Answers of the user server, by status code.",
            ("api_name", "api_kind", "status_code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "cortex_async_latency",
            "Seconds from sending a request to the user server to its answer.",
            ("api_name", "api_kind"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.queue_time = Histogram(
            "cortex_async_queue_time_seconds",
            "Seconds a request waited from its submission to its first start.",
            ("api_name",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "cortex_async_requests",
            "Requests that ended, by terminal status (completed, failed, cancelled).",
            ("api_name", "status"),
            registry=self.registry,
        )
        self.progress_reports = Counter(
            "cortex_async_progress_reports",
            "Progress reports the user server posted for its running requests (POST /progress, accepted).",
            ("api_name",),
            registry=self.registry,
        )
        self.progress_writes = Counter(
            "cortex_async_progress_writes",
            "Progress writes to the backend: the reports, coalesced to one per request per interval.",
            ("api_name",),
            registry=self.registry,
        )

    def progress_reported(self, api: str) -> None:
        """The user server posted a progress report that was taken."""
        self.progress_reports.labels(api).inc()

    def progress_written(self, api: str) -> None:
        """A progress value was written to the backend."""
        self.progress_writes.labels(api).inc()

    def answered(self, api: str, status_code: int, seconds: float) -> None:
        """The user server answered ``status_code`` after ``seconds``."""
        self.request_count.labels(api, API_KIND, str(status_code)).inc()
        self.latency.labels(api, API_KIND).observe(seconds)

    def started(self, api: str, waited: float) -> None:
        """A request started after waiting ``waited`` seconds since its submission."""
        self.queue_time.labels(api).observe(max(0.0, waited))

    def ended(self, api: str, status: str) -> None:
        """A request reached the terminal ``status``."""
        self.requests.labels(api, status).inc()

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format."""
        return generate_latest(self.registry)
