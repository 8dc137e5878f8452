"""The operator in-process over the embedded backends, its runtime in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import Backends, open_backends
from cortex.operator.app import create_operator_app
from cortex.operator.service import Operator
from tests.autoscaler.test_loop import RecordingRuntime
from tests.servers.databases import urls_for


class Harness:
    """An operator, its HTTP app and the backends under it."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.runtime = RecordingRuntime()
        self.operator = Operator(
            backends.catalog, self.runtime, gateway_url="http://gw", queue=backends.queue, records=backends.records
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_operator_app(self.operator, {})), base_url="http://operator"
        )


@pytest.fixture
async def sqlite_backends(tmp_path: Path) -> AsyncIterator[Backends]:
    async with urls_for("sqlite", tmp_path) as urls:
        opened = await open_backends(urls)
        try:
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture
async def harness(sqlite_backends: Backends) -> AsyncIterator[Harness]:
    made = Harness(sqlite_backends)
    try:
        yield made
    finally:
        await made.http.aclose()
