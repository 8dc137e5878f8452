"""Which replicas to remove when scaling in: a pure policy, so it is tested by a table.

Not-ready replicas go first (they serve nobody), then idle ones, then the least busy; a busy
replica is never chosen while an idle one remains (DESIGN §4). Among equals, a replica of an older
version goes before a current one, and a younger one before an older one (as Kubernetes does).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """What the policy knows about one replica.

    Attributes:
        id: The replica's id.
        ready: Whether it takes requests.
        in_flight: Requests it runs now; None when its dequeuer did not say.
        up_to_date: Whether it runs the API's current version.
        started_at: When it started (Unix time).
    """

    id: str
    ready: bool
    in_flight: int | None
    up_to_date: bool
    started_at: float


def removal_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """``candidates`` from the first to remove to the last; a ready replica of unknown load counts as busiest."""

    def cost(c: Candidate) -> tuple[bool, bool, bool, float, float]:
        load = math.inf if c.in_flight is None else float(c.in_flight)
        return (c.ready, load > 0, c.up_to_date, load, -c.started_at)

    return sorted(candidates, key=cost)
