"""Kubernetes pod logs of one API, merged in time order across pods and containers, as ``cortex logs`` shows them.

The API server stamps each line with when the container runtime received it (``timestamps=true``,
RFC 3339 with nanoseconds), so every container's lines are asked for with their stamps and merged
by :func:`cortex.runtime.logs.merge`; ``tail`` counts lines overall. Following, the lines already
there come first, merged and tailed, then each container's stream is followed from where its
first read ended (lines up to that read's last stamp are not shown again), and the containers of
pods that start later from their first line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient

from cortex.runtime.logs import Line, merge, timed

#: how often a followed API's pods are looked at again, for new ones
FOLLOW_INTERVAL = 1.0
#: lines a followed container's stream starts with besides those of the first read: what came in between
FOLLOW_OVERLAP = 1000

#: how the note that stands for a log that could not be read begins
NO_LOG = "(no log: "
#: one container's log: (pod, container)
Source = tuple[str, str]


class ApiLogs:
    """The logs of the pods ``pods()`` lists (one API's), through the API server.

    Args:
        client: The cluster's API client.
        namespace: Where the pods are.
        pods: The API's pods now, as the runtime's watch sees them.
    """

    def __init__(self, client: AsyncClient, namespace: str, pods: Callable[[], list[dict[str, Any]]]) -> None:
        self.client = client
        self.namespace = namespace
        self.pods = pods

    async def read(self, tail: int | None) -> AsyncGenerator[str, None]:
        """Every container's lines now, in time order, the last ``tail`` of them overall."""
        sources = [(_name(pod), container) for pod in self.pods() for container in _containers(pod)]
        for line in merge(await self._snapshot(sources, tail), tail):
            yield line.text

    async def follow(self, tail: int | None) -> AsyncGenerator[str, None]:
        """The last ``tail`` lines (merged), then every line as it comes, until the consumer stops."""
        lines: asyncio.Queue[Line] = asyncio.Queue(maxsize=1000)
        pumps: dict[Source, asyncio.Task[None]] = {}
        sources = [(_name(pod), container) for pod in self.pods() for container in _started_containers(pod)]
        # with tail 0, one line each still tells where following starts
        first = await self._snapshot(sources, None if tail is None else max(tail, 1))
        for source, got in zip(sources, first, strict=True):
            last = got[-1] if got and not got[-1].text.startswith(f"[{source[0]} {source[1]}] {NO_LOG}") else None
            overlap = None if tail is None else len(got) + FOLLOW_OVERLAP
            pumps[source] = asyncio.create_task(self._pump(source, overlap, last, lines))
        for line in merge(first, tail):
            yield line.text
        loop = asyncio.get_running_loop()
        next_look = loop.time() + FOLLOW_INTERVAL
        try:
            while True:
                if loop.time() >= next_look:  # even while lines keep coming
                    self._follow_new(pumps, lines)
                    next_look = loop.time() + FOLLOW_INTERVAL
                try:
                    async with asyncio.timeout(FOLLOW_INTERVAL):
                        batch = [await lines.get()]
                except TimeoutError:
                    continue
                while not lines.empty():  # what came together is shown in time order
                    batch.append(lines.get_nowait())
                for line in sorted(batch, key=lambda line: line.time):
                    yield line.text
        finally:
            for task in pumps.values():
                task.cancel()
            await asyncio.gather(*pumps.values(), return_exceptions=True)

    def _follow_new(self, pumps: dict[Source, asyncio.Task[None]], out: asyncio.Queue[Line]) -> None:
        """Follow the containers of pods started since the last look, from their first line."""
        for pod in self.pods():
            for container in _started_containers(pod):
                if (source := (_name(pod), container)) not in pumps:
                    pumps[source] = asyncio.create_task(self._pump(source, None, None, out))

    async def _pump(self, source: Source, tail: int | None, after: Line | None, out: asyncio.Queue[Line]) -> None:
        """Put the followed lines of ``source`` on ``out``, those up to ``after`` (shown already) left out."""
        async for line in self._lines(*source, follow=True, tail=tail):
            # stamps are nanoseconds, so a new line stamped the same as the last one shown is as good as impossible
            if after is not None and line.time <= after.time:
                continue
            await out.put(line)

    async def _snapshot(self, sources: list[Source], tail: int | None) -> list[list[Line]]:
        async def read(source: Source) -> list[Line]:
            return [line async for line in self._lines(*source, follow=False, tail=tail)]

        return list(await asyncio.gather(*(read(source) for source in sources)))

    async def _lines(self, pod: str, container: str, *, follow: bool, tail: int | None) -> AsyncGenerator[Line, None]:
        prefix = f"[{pod} {container}] "
        previous = 0.0
        try:
            async for text in self.client.log(
                pod, namespace=self.namespace, container=container, follow=follow, tail_lines=tail, timestamps=True
            ):
                (line,) = timed([text.rstrip("\n")], prefix, previous)
                previous = line.time
                yield line
        except ApiError as exc:
            # a pod that is starting or gone has no log yet or any more: say so, in its place
            yield Line(time.time(), prefix + f"{NO_LOG}{exc.status.message})")
        except httpx2.HTTPError as exc:
            yield Line(time.time(), prefix + f"{NO_LOG}{exc})")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _containers(pod: Mapping[str, Any]) -> Iterator[str]:
    for container in (pod.get("spec") or {}).get("containers") or []:
        yield str(container.get("name"))


def _started_containers(pod: Mapping[str, Any]) -> Iterator[str]:
    """The containers that have a log: running, or run and ended (a pending one has none yet)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            yield str(status.get("name"))
