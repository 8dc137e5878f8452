"""The recent autoscaling events of each API, kept in memory for ``cortex describe``.

The autoscaler loop records; the operator reads. Like Cortex's logs (and Kubernetes' events),
they do not survive a restart of the cluster.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

#: how many events are kept per API
KEEP = 20


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingEvent:
    """One change of an API's requested replicas.

    Attributes:
        time: When it was decided (Unix time).
        before: The replicas requested before.
        after: The replicas requested since.
        reason: Why, in words.
    """

    time: float
    before: int
    after: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The describe JSON shape: ``{"time", "from", "to", "reason"}``."""
        return {"time": self.time, "from": self.before, "to": self.after, "reason": self.reason}


class ScalingEvents:
    """The last ``keep`` events of each API, oldest first."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._events: dict[str, collections.deque[ScalingEvent]] = {}

    def record(self, api: str, event: ScalingEvent) -> None:
        """Add ``event`` to ``api``'s events, dropping the oldest past ``keep``."""
        self._events.setdefault(api, collections.deque(maxlen=self._keep)).append(event)

    def recent(self, api: str) -> list[ScalingEvent]:
        """``api``'s kept events, oldest first (empty for an unknown API)."""
        return list(self._events.get(api, ()))

    def forget(self, api: str) -> None:
        """Drop ``api``'s events (it was deleted)."""
        self._events.pop(api, None)
