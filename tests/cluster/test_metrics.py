"""One scrape of a real local cluster's gateway shows the gateway's, the operator's and the dequeuers' metrics."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.cluster.conftest import LocalCluster
from tests.promtext import families, samples, value

pytestmark = pytest.mark.slow


def test_the_gateway_metrics_include_the_operator_and_each_dequeuer(local_cluster: LocalCluster) -> None:
    local_cluster.cortex("deploy", str(local_cluster.example("hello-world")))
    local_cluster.wait_live("hello-world")
    rid = httpx.post(f"{local_cluster.gateway}/hello-world", json={"text": "hi"}).json()["id"]
    assert local_cluster.wait_result("hello-world", rid)["status"] == "completed"
    deadline = time.monotonic() + 30
    while True:  # the operator's gauges are set at each tick (every 10 s)
        text = httpx.get(f"{local_cluster.gateway}/metrics", timeout=10).text
        if value(text, "cortex_async_replicas_ready", api_name="hello-world") == 1:
            break
        assert time.monotonic() < deadline, f"no operator gauges at the gateway's /metrics:\n{text}"
        time.sleep(0.2)
    samples(text)  # one parse of the merged text, no series twice
    assert {"cortex_async_request_count", "cortex_async_latency", "cortex_async_gateway_requests"} <= families(text)
    assert value(text, "cortex_async_request_count_total", api_name="hello-world", status_code="200") == 1
    assert value(text, "cortex_async_gateway_requests_total", route="submit", code="200") == 1
    replicas = {dict(labels).get("replica") for name, labels in samples(text) if name == "cortex_async_latency_count"}
    assert len(replicas) == 1 and None not in replicas  # the dequeuer's series, labelled with its replica
