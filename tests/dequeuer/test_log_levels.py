"""The dequeuer's per-request lines: a completed request logs at DEBUG only, a failed one at INFO (issue 19).

Two INFO lines per request cost about a fifth of the dispatch rate (bench/notes.md); what an operator looks
for in the default INFO logs is what went wrong, so a failure's line stays there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.dequeuer.conftest import Cluster

MakeCluster = Callable[..., Awaitable[Cluster]]
WORKER = "cortex.dequeuer.worker"


def _about(caplog: pytest.LogCaptureFixture, rid: str) -> dict[str, int]:
    """Each action logged about ``rid`` by the worker, and at what level."""
    return {
        getattr(record, "action", ""): record.levelno
        for record in caplog.records
        if record.name == WORKER and getattr(record, "request_id", None) == rid
    }


async def test_a_completed_request_logs_at_debug(make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=WORKER)
    cluster = await make_cluster()
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        assert (await cluster.wait(rid))["status"] == "completed"
    assert _about(caplog, rid) == {"start": logging.DEBUG, "finish": logging.DEBUG}


async def test_a_failed_request_is_still_logged_at_info(
    make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=WORKER)
    cluster = await make_cluster()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    cluster.user.handler = broken
    rid = await cluster.submit(content=b"{}")
    async with cluster.dequeuer():
        assert (await cluster.wait(rid))["status"] == "failed"
    assert _about(caplog, rid) == {"finish": logging.INFO}
