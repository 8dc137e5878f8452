"""A leasing process for test_processes.py: takes every request it can from a shared queue.

Usage: python -m tests.backends.lease_worker QUEUE_URL STORE_URL BLOBS_URL TASKS
Prints ``ready`` once connected, waits for a line on stdin (so all workers start together), then
leases and acks with TASKS concurrent loops until the queue is empty, and prints the ids as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from cortex.backends import BackendUrls, open_backends


async def main(urls: BackendUrls, tasks: int) -> list[str]:
    backends = await open_backends(urls)
    taken: list[str] = []
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def loop() -> None:
            while leases := await backends.queue.lease("api", visibility=60, limit=3):
                for lease in leases:
                    taken.append(lease.id)
                    assert await backends.queue.ack(lease)

        await asyncio.gather(*(loop() for _ in range(tasks)))
    finally:
        await backends.aclose()
    return taken


if __name__ == "__main__":
    queue_url, store_url, blobs_url, tasks = sys.argv[1:5]
    ids = asyncio.run(main(BackendUrls(queue=queue_url, store=store_url, blobs=blobs_url), int(tasks)))
    print(json.dumps(ids), flush=True)
