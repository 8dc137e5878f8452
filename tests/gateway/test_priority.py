"""``X-Cortex-Priority`` at the gateway, on every backend: 0 to 9, kept on the record, bad values a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import ASGIApp

from cortex.backends import Backends
from cortex.gateway import create_app
from cortex.gateway.openapi import openapi_document
from tests.helpers import api_yaml, deploy


@pytest.fixture
async def client(backends: Backends) -> AsyncIterator[httpx.AsyncClient]:
    await deploy(backends.catalog, api_yaml("echo"))
    app: ASGIApp = create_app(backends)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def test_the_priority_is_kept_and_shown_in_the_get_answer(client: httpx.AsyncClient) -> None:
    urgent = await client.post("/echo", json={}, headers={"X-Cortex-Priority": "9"})
    assert urgent.status_code == 200, urgent.text
    plain = await client.post("/echo", json={})
    assert (await client.get(f"/echo/{urgent.json()['id']}")).json()["priority"] == 9
    assert "priority" not in (await client.get(f"/echo/{plain.json()['id']}")).json()  # not sent: not shown


@pytest.mark.parametrize("value", ["10", "-1", "1.5", "high", "", "٣", "99999999999999999999"])
async def test_a_priority_out_of_range_is_a_400_naming_the_header_and_the_range(
    client: httpx.AsyncClient, backends: Backends, value: str
) -> None:
    answer = await client.post("/echo", json={}, headers={b"X-Cortex-Priority": value.encode()})
    assert answer.status_code == 400, answer.text
    assert "X-Cortex-Priority must be an integer from 0 to 9" in answer.json()["error"]
    assert (await backends.queue.depth("echo")).queued == 0


def test_the_openapi_document_describes_the_header() -> None:
    submit = openapi_document()["paths"]["/{endpoint}"]["post"]
    (header,) = [p for p in submit["parameters"] if p["name"] == "X-Cortex-Priority"]
    assert header["schema"] == {"type": "integer", "minimum": 0, "maximum": 9, "default": 0}
