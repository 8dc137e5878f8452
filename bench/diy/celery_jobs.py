"""Celery with its Redis broker and result backend: the no-op task and the client side."""

from __future__ import annotations

import gc
import sys
from typing import Any, ClassVar

import redis
from celery import Celery  # type: ignore[import-untyped]
from celery.result import AsyncResult  # type: ignore[import-untyped]

from bench.diy import PAYLOAD, QUEUE, REDIS_URL

app = Celery("cortex_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(payload: dict[str, Any]) -> dict[str, Any]:
    """The no-op job."""
    return {}


class CeleryStack:
    """Celery 5 with the ``solo`` pool (no prefork hop)."""

    name = "celery"
    #: its client submits one job at a time
    concurrent_submits = False
    worker_argv: ClassVar[list[str]] = [
        sys.executable, "-m", "celery", "-A", "bench.diy.celery_jobs:app", "worker", "--pool=solo",
        "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING",
    ]  # fmt: skip

    def __init__(self) -> None:
        # every handle of a chunk is kept until aclose(), and the cyclic GC is off during a get(): an
        # AsyncResult collected in the middle of another one's get() unsubscribes on the pub/sub connection
        # that get() is using, and the get() hangs for good (seen here with Celery 5.6 and redis-py 5)
        self._handles: list[AsyncResult] = []

    async def submit(self) -> object:
        handle = noop.apply_async(args=(PAYLOAD,))
        self._handles.append(handle)
        return handle

    async def visible(self, handle: object) -> bool:
        assert isinstance(handle, AsyncResult)
        return bool(handle.ready())

    async def wait(self, handle: object, timeout: float) -> None:
        assert isinstance(handle, AsyncResult)
        gc.disable()
        try:
            handle.get(timeout=timeout)  # the Redis result backend's blocking wait (pub/sub on the task's key)
        finally:
            gc.enable()

    async def submit_many(self, count: int, clients: int) -> None:
        assert clients == 1, "Celery's client is synchronous"
        for _ in range(count):
            noop.apply_async(args=(PAYLOAD,))

    async def flush(self) -> None:
        redis.Redis.from_url(REDIS_URL).flushdb()

    async def aclose(self) -> None:
        self._handles.clear()
        gc.collect()  # here, between two gets, what collecting them unsubscribes cannot hang one
