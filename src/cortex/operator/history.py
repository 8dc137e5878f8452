"""The status page's memory: the last hour of each API's autoscaler ticks, bounded (no I/O here).

Each tick gives one reading per API (queue depth, replicas) and the requests completed since the
last tick. :class:`History` keeps them in a ring buffer per API, one :class:`Point` per
``resolution`` seconds: a tick that falls in the bucket of the previous point replaces its gauges
(the latest reading wins) and adds its completions, so a fast tick (0.2 s in the tests) costs no
more memory than Cortex's 10 s one, and an API never holds more than ``span / resolution + 1``
points.

Completions come from the dequeuers' ``cortex_async_requests_total{status="completed"}`` counters,
one per replica: :class:`CompletionCounter` turns their readings into increments the way
Prometheus' ``increase()`` does (a counter lower than before was restarted and counts from 0).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Collection, Mapping

#: seconds of history the status page shows
DEFAULT_SPAN = 3600.0
#: seconds per point (Cortex's autoscaler tick)
DEFAULT_RESOLUTION = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One bucket of one API's history."""

    at: float  #: Unix seconds at which the bucket starts
    queued: int
    in_flight: int
    requested: int
    ready: int
    completed: int  #: requests completed during the bucket

    def to_json(self) -> dict[str, float | int]:
        """The point as the status page's JSON gives it."""
        return dataclasses.asdict(self)


class History:
    """The last ``span`` seconds of every API's points, ``resolution`` seconds apart at most."""

    def __init__(self, *, span: float = DEFAULT_SPAN, resolution: float = DEFAULT_RESOLUTION) -> None:
        if span <= 0 or resolution <= 0:
            raise ValueError(f"span and resolution must be > 0 seconds (got {span}, {resolution})")
        self.span = span
        self.resolution = resolution
        self._maxlen = math.ceil(span / resolution) + 1
        self._points: dict[str, collections.deque[Point]] = {}

    def record(
        self, api: str, at: float, *, queued: int, in_flight: int, requested: int, ready: int, completed: int = 0
    ) -> None:
        """Add one tick's reading of ``api`` taken at Unix time ``at``."""
        bucket = math.floor(at / self.resolution) * self.resolution
        points = self._points.setdefault(api, collections.deque(maxlen=self._maxlen))
        if points and bucket <= points[-1].at:  # the same bucket (or a clock stepped back): fold into it
            last = points.pop()
            bucket, completed = last.at, last.completed + completed
        points.append(Point(bucket, queued, in_flight, requested, ready, completed))
        self._drop_before(at - self.span)

    def points(self, api: str, *, now: float) -> list[Point]:
        """``api``'s points of the last ``span`` seconds before ``now``, oldest first ([] if none)."""
        since = now - self.span
        return [point for point in self._points.get(api, ()) if point.at + self.resolution > since]

    def apis(self) -> list[str]:
        """The APIs with points, by name."""
        return sorted(self._points)

    def _drop_before(self, since: float) -> None:
        """Forget the points that ended before ``since``, and the APIs left with none (deleted ones)."""
        for api in list(self._points):
            points = self._points[api]
            while points and points[0].at + self.resolution <= since:
                points.popleft()
            if not points:
                del self._points[api]


class CompletionCounter:
    """Completed requests since the previous reading, from every replica's counters."""

    def __init__(self) -> None:
        #: the last value of each (replica, api) counter
        self._last: dict[tuple[str, str], float] = {}

    def update(self, counters: Mapping[tuple[str, str], float], *, replicas: Collection[str]) -> dict[str, int]:
        """Completions per API since the last call, given each ``(replica, api)`` counter's value now.

        ``replicas`` are the replicas running now: one missing from ``counters`` (its scrape
        failed) keeps its last value, so its completions count at the next reading instead of
        twice; one no longer running is forgotten (what it completed since the last reading is lost).
        A replica seen for the first time counts from 0, and so does a counter that went down.
        """
        completed: dict[str, float] = {}
        for (replica, api), value in counters.items():
            last = self._last.get((replica, api), 0.0)
            increase = value if value < last else value - last
            completed[api] = completed.get(api, 0.0) + increase
        running = set(replicas)
        kept = {key: value for key, value in self._last.items() if key[0] in running and key not in counters}
        self._last = {**kept, **counters}
        return {api: round(value) for api, value in completed.items()}
