"""The scale-in policy, as a table: not ready first, then idle, then least busy."""

from __future__ import annotations

import pytest

from cortex.runtime.removal import Candidate, removal_order


def replica(id: str, *, ready: bool = True, load: int | None = 0, current: bool = True, age: float = 0) -> Candidate:
    return Candidate(id, ready, load, current, started_at=1000 - age)


@pytest.mark.parametrize(
    ("candidates", "order"),
    [
        ([replica("busy", load=1), replica("idle")], ["idle", "busy"]),
        ([replica("ready"), replica("not-ready", ready=False, load=None)], ["not-ready", "ready"]),
        ([replica("b3", load=3), replica("b1", load=1), replica("b2", load=2)], ["b1", "b2", "b3"]),
        # an old version goes first among idle ones, never before an idle current one if it is busy
        ([replica("new"), replica("old", current=False)], ["old", "new"]),
        ([replica("old-busy", load=1, current=False), replica("new-idle")], ["new-idle", "old-busy"]),
        # unknown load counts as the busiest
        ([replica("unknown", load=None), replica("busy", load=5)], ["busy", "unknown"]),
        # among equals, the youngest first
        ([replica("older", age=100), replica("younger", age=1)], ["younger", "older"]),
        ([], []),
    ],
)
def test_removal_order(candidates: list[Candidate], order: list[str]) -> None:
    assert [c.id for c in removal_order(candidates)] == order
