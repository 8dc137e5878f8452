"""RQ: the no-op job and the client side."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import redis
from rq import Queue
from rq.job import Job

from bench.diy import PAYLOAD, QUEUE, REDIS_URL


def noop(payload: dict[str, Any]) -> dict[str, Any]:
    """The no-op job."""
    return {}


class RqStack:
    """RQ with ``SimpleWorker`` (no fork per job)."""

    name = "rq"
    #: its client submits one job at a time
    concurrent_submits = False
    worker_argv: ClassVar[list[str]] = [
        sys.executable, "-m", "rq.cli", "worker", "-u", REDIS_URL, "-w", "rq.worker.SimpleWorker",
        "--logging_level", "WARNING", QUEUE,
    ]  # fmt: skip

    def __init__(self) -> None:
        self._redis = redis.Redis.from_url(REDIS_URL)
        self._queue = Queue(QUEUE, connection=self._redis)

    async def submit(self) -> object:
        return self._queue.enqueue(noop, PAYLOAD)

    async def visible(self, handle: object) -> bool:
        assert isinstance(handle, Job)
        return handle.latest_result() is not None

    async def wait(self, handle: object, timeout: float) -> None:
        assert isinstance(handle, Job)
        if handle.latest_result(timeout=max(1, round(timeout))) is None:  # blocks on the results stream (XREAD)
            raise TimeoutError(f"rq job {handle.id} did not finish within {timeout:g}s")

    async def submit_many(self, count: int, clients: int) -> None:
        assert clients == 1, "RQ's client is synchronous"
        for _ in range(count):
            self._queue.enqueue(noop, PAYLOAD)

    async def flush(self) -> None:
        self._redis.flushdb()

    async def aclose(self) -> None:
        pass
