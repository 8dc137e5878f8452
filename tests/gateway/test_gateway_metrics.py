"""The gateway's ``/metrics``: answers by route kind and code, plus the operator's when it names one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cortex.backends import Backends
from cortex.gateway import create_app
from cortex.metrics import OperatorMetrics
from cortex.queue.base import Depth
from tests.helpers import api_yaml, deploy, one_route, serving
from tests.promtext import samples, value


async def test_answers_are_counted_by_route_and_code(backends: Backends) -> None:
    await deploy(backends.catalog, api_yaml("echo"))
    app = create_app(backends)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        ids = [(await client.post("/echo", json={})).json()["id"] for _ in range(2)]
        assert (await client.get(f"/echo/{ids[0]}")).status_code == 200
        assert (await client.get("/echo/unknown")).status_code == 404
        assert (await client.delete(f"/echo/{ids[1]}")).status_code == 200
        assert (await client.get("/nowhere/at/all")).status_code == 404
        assert (await client.get("/echo")).status_code == 405
        text = (await client.get("/metrics")).text
    samples(text)
    name = "cortex_async_gateway_requests_total"
    assert value(text, name, api_name="echo", route="submit", code="200") == 2
    assert value(text, name, api_name="echo", route="status", code="200") == 1
    assert value(text, name, api_name="echo", route="status", code="404") == 1
    assert value(text, name, api_name="echo", route="cancel", code="200") == 1
    assert value(text, name, route="other", code="404") == 1
    assert value(text, name, route="other", code="405") == 1
    assert value(text, name) == 7  # /metrics itself is not counted
    assert (await backends.queue.depth("echo")).queued == 1


@pytest.fixture
async def operator_url() -> AsyncIterator[str]:
    """An operator stand-in on loopback serving real operator gauges at ``/metrics``."""
    metrics = OperatorMetrics()
    metrics.observe("echo", Depth(queued=4, in_flight=1), requested=1, ready=1)
    async with one_route("/metrics", serving(metrics)) as url:
        yield url


async def test_the_operators_metrics_are_merged_in(backends: Backends, operator_url: str) -> None:
    for url, included in [(operator_url, True), ("http://127.0.0.1:9", False)]:
        app = create_app(backends, operator_url=url)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            await client.get("/nowhere")
            text = (await client.get("/metrics")).text
        samples(text)
        assert value(text, "cortex_async_gateway_requests_total", code="404") == 1
        assert value(text, "cortex_async_queued", api_name="echo") == (4 if included else 0)
