"""What feeds the status page's history: after each autoscaler tick, its readings and the completions.

The autoscaler loop hands over what each tick saw (:class:`~cortex.autoscaler.loop.Reading`);
the completions are read from the replicas' dequeuers, whose
``cortex_async_requests_total{status="completed"}`` counters the operator fetches from the same
admin ``/metrics`` it merges into its own (one request per replica per tick, 1 s timeout). Why
the dequeuers and not the store: the counters exist already, the operator fetches them already,
and the store would need a per-tick count of finished requests (an index on every backend).

The fetch runs beside the loop, never in its way: a tick starts one (unless the last one is still
running) and records the completions that the previous ones found, so a replica that does not
answer slows neither autoscaling nor the page, and its completions show at a later point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from cortex.autoscaler.loop import Reading
from cortex.exposition import fetch_all
from cortex.operator.history import CompletionCounter, History

log = logging.getLogger(__name__)

#: the replica dequeuers whose counters are read: replica id -> ``/metrics`` URL
Peers = Callable[[], Mapping[str, str]]


def completed_counts(text: str) -> dict[str, float]:
    """Each API's ``cortex_async_requests_total{status="completed"}`` in one exposition ({} if it does not parse)."""
    counts: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name != "cortex_async_requests":
                continue
            for sample in family.samples:
                if sample.name == "cortex_async_requests_total" and sample.labels.get("status") == "completed":
                    api = sample.labels.get("api_name", "")
                    counts[api] = counts.get(api, 0.0) + sample.value
    except ValueError as exc:
        log.warning("status page: a dequeuer's metrics do not parse; its completions are left out: %s", exc)
        return {}
    return counts


class StatusFeed:
    """The autoscaler's ``on_tick``: records every reading, with its API's completions, in ``history``."""

    def __init__(self, history: History, peers: Peers, *, clock: Callable[[], float] = time.time) -> None:
        self.history = history
        self._peers = peers
        self._clock = clock
        self._completions = CompletionCounter()
        #: completions found by the fetches and not recorded yet, per API
        self._completed: dict[str, int] = {}
        self._fetching: asyncio.Task[None] | None = None

    async def on_tick(self, readings: list[Reading]) -> None:
        """Record one tick, with the completions found since the last; start the next fetch."""
        at = self._clock()
        for reading in readings:
            self.history.record(
                reading.api,
                at,
                queued=reading.depth.queued,
                in_flight=reading.depth.in_flight,
                requested=reading.requested,
                ready=reading.ready,
                completed=self._completed.pop(reading.api, 0),
            )
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch(), name="status-feed")

    async def settled(self) -> None:
        """Wait for the fetch under way, if any."""
        if self._fetching is not None:
            await asyncio.wait({self._fetching})

    async def aclose(self) -> None:
        """Stop the fetch under way."""
        task, self._fetching = self._fetching, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fetch(self) -> None:
        try:
            peers = dict(self._peers())
            counters = {
                (replica, api): value
                for replica, text in await fetch_all(peers)
                for api, value in completed_counts(text).items()
            }
            for api, count in self._completions.update(counters, replicas=peers).items():
                self._completed[api] = self._completed.get(api, 0) + count
        except Exception:  # the page's completions may lag; nothing else depends on them
            log.exception("status page: reading the replicas' completions failed")
