from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cortex.backends import Backends, open_backends
from tests.servers.databases import urls_for

#: every backend the conformance suite runs against (local Redis and PostgreSQL: tests/servers/databases.py)
BACKENDS = ["sqlite", "redis", "postgres"]


@pytest.fixture(params=BACKENDS)
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backends]:
    async with urls_for(request.param, tmp_path) as urls:
        opened = await open_backends(urls)
        try:
            yield opened
        finally:
            await opened.aclose()


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CORTEX_"):
            monkeypatch.delenv(key)
