"""Merging several expositions into one scrape: each family once, each part's samples labelled."""

from __future__ import annotations

from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.exposition import merge
from cortex.metrics import OperatorMetrics
from cortex.queue.base import Depth
from tests.promtext import samples, value


def test_replicas_families_are_written_once_with_a_replica_label() -> None:
    first, second, operator = DequeuerMetrics(), DequeuerMetrics(), OperatorMetrics()
    first.answered("echo", 200, 0.5)
    second.answered("echo", 200, 2.0)
    second.answered("echo", 500, 20.0)
    operator.observe("echo", Depth(queued=3, in_flight=1), requested=2, ready=2)
    text = merge(
        [
            (operator.exposition().decode(), {}),
            (first.exposition().decode(), {"replica": "r1"}),
            (second.exposition().decode(), {"replica": "r2"}),
        ]
    ).decode()
    assert text.count("# TYPE cortex_async_latency histogram") == 1
    samples(text)  # parses, and no series twice
    assert value(text, "cortex_async_request_count_total", status_code="200") == 2
    assert value(text, "cortex_async_request_count_total", replica="r2") == 2
    assert value(text, "cortex_async_latency_count") == 3
    assert value(text, "cortex_async_latency_bucket", le="10.0") == 2  # past Cortex's 10 s cap, still counted
    assert value(text, "cortex_async_latency_bucket", le="30.0") == 3
    assert value(text, "cortex_async_queued", api_name="echo") == 3


def test_a_part_that_does_not_parse_is_left_out() -> None:
    metrics = DequeuerMetrics()
    metrics.ended("echo", "completed")
    text = merge([(metrics.exposition().decode(), {}), ("not { prometheus", {"replica": "bad"})]).decode()
    assert value(text, "cortex_async_requests_total", status="completed") == 1
