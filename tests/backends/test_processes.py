"""Several processes leasing from one shared queue never take the same request (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cortex.backends import open_backends
from tests.servers.databases import urls_for

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, TASKS, REQUESTS = 4, 4, 2000


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
async def test_processes_leasing_from_one_queue_never_share_a_request(backend: str, tmp_path: Path) -> None:
    async with urls_for(backend, tmp_path) as urls:
        producer = await open_backends(urls)
        try:
            for i in range(REQUESTS):
                await producer.queue.enqueue("api", f"r{i:05d}")
        finally:
            await producer.aclose()
        argv = [sys.executable, "-m", "tests.backends.lease_worker", urls.queue, urls.store, urls.blobs, str(TASKS)]
        workers = [
            subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(PROCESSES)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
            for worker in workers:  # all connected: start them together
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            taken = [json.loads(worker.communicate(timeout=50)[0]) for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    every = [rid for ids in taken for rid in ids]
    assert len(every) == REQUESTS and sorted(every) == [f"r{i:05d}" for i in range(REQUESTS)]
    assert all(ids for ids in taken), [len(ids) for ids in taken]  # each process took its share
