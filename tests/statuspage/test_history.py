"""The status page's tick history and completion counting, as tables."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from cortex.operator.history import CompletionCounter, History, Point

T0 = 1_700_000_000.0  # a multiple of 10: buckets start on it


def record(history: History, at: float, queued: int, completed: int = 0, api: str = "a") -> None:
    history.record(api, at, queued=queued, in_flight=1, requested=2, ready=1, completed=completed)


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        pytest.param([(T0, 3, 1)], [(T0, 3, 1)], id="one tick, one point"),
        pytest.param(
            [(T0 + 1, 3, 1), (T0 + 5, 4, 2), (T0 + 9.9, 2, 0)],
            [(T0, 2, 3)],
            id="ticks within a bucket: the latest gauges, the completions added",
        ),
        pytest.param(
            [(T0 + 1, 3, 1), (T0 + 11, 4, 2), (T0 + 35, 5, 0)],
            [(T0, 3, 1), (T0 + 10, 4, 2), (T0 + 30, 5, 0)],
            id="a bucket per resolution, gaps left out",
        ),
        pytest.param(
            [(T0 + 21, 3, 1), (T0 + 5, 4, 2)],
            [(T0 + 20, 4, 3)],
            id="a clock that steps back folds into the last bucket",
        ),
    ],
)
def test_ticks_become_points(ticks: list[tuple[float, int, int]], expected: list[tuple[float, int, int]]) -> None:
    history = History(span=3600, resolution=10)
    for at, queued, completed in ticks:
        record(history, at, queued, completed)
    points = history.points("a", now=ticks[-1][0])
    assert [(p.at, p.queued, p.completed) for p in points] == expected
    assert all((p.in_flight, p.requested, p.ready) == (1, 2, 1) for p in points)


@pytest.mark.parametrize(
    ("span", "resolution", "ticks", "kept"),
    [
        pytest.param(60, 10, 100, 7, id="an hour of ticks keeps span/resolution + 1 points"),
        pytest.param(60, 10, 3, 3, id="fewer ticks than that keep them all"),
        pytest.param(30, 0.5, 1000, 61, id="fast ticks are bounded too"),
    ],
)
def test_the_buffer_is_bounded(span: float, resolution: float, ticks: int, kept: int) -> None:
    history = History(span=span, resolution=resolution)
    for i in range(ticks):
        record(history, T0 + i * resolution, i)
    points = history.points("a", now=T0 + (ticks - 1) * resolution)
    assert len(points) == kept
    assert points[-1].queued == ticks - 1


def test_points_older_than_the_span_are_dropped_and_so_are_silent_apis() -> None:
    history = History(span=60, resolution=10)
    record(history, T0, 1, api="deleted")
    record(history, T0, 1, api="live")
    record(history, T0 + 30, 2, api="live")
    assert history.points("deleted", now=T0 + 30) == [Point(T0, 1, 1, 2, 1, 0)]
    assert history.points("deleted", now=T0 + 70) == []  # hidden once past the span
    record(history, T0 + 75, 3, api="live")  # a later tick forgets the API no tick mentions any more
    assert history.apis() == ["live"]
    assert [p.at for p in history.points("live", now=T0 + 75)] == [T0 + 30, T0 + 70]
    assert history.points("unknown", now=T0) == []


def test_a_point_is_json() -> None:
    assert Point(T0, 1, 2, 3, 4, 5).to_json() == {
        "at": T0,
        "queued": 1,
        "in_flight": 2,
        "requested": 3,
        "ready": 4,
        "completed": 5,
    }


@pytest.mark.parametrize(("span", "resolution"), [(0, 10), (60, 0), (-1, 1)])
def test_span_and_resolution_must_be_positive(span: float, resolution: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        History(span=span, resolution=resolution)


Counters = Mapping[tuple[str, str], float]


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        pytest.param([({("r1", "a"): 3}, {"r1"})], [{"a": 3}], id="a new replica counts from 0"),
        pytest.param(
            [({("r1", "a"): 3}, {"r1"}), ({("r1", "a"): 5}, {"r1"}), ({("r1", "a"): 5}, {"r1"})],
            [{"a": 3}, {"a": 2}, {"a": 0}],
            id="increments between readings",
        ),
        pytest.param(
            [
                ({("r1", "a"): 3, ("r2", "a"): 1, ("r2", "b"): 4}, {"r1", "r2"}),
                ({("r1", "a"): 4, ("r2", "a"): 3}, {"r1", "r2"}),
            ],
            [{"a": 4, "b": 4}, {"a": 3}],
            id="summed over replicas, per API",
        ),
        pytest.param(
            [({("r1", "a"): 7}, {"r1"}), ({("r1", "a"): 2}, {"r1"})],
            [{"a": 7}, {"a": 2}],
            id="a counter that went down was restarted",
        ),
        pytest.param(
            [({("r1", "a"): 3}, {"r1"}), ({}, {"r1"}), ({("r1", "a"): 5}, {"r1"})],
            [{"a": 3}, {}, {"a": 2}],
            id="a failed scrape counts at the next one, not twice",
        ),
        pytest.param(
            [({("r1", "a"): 3}, {"r1"}), ({}, set()), ({("r1", "a"): 5}, {"r1"})],
            [{"a": 3}, {}, {"a": 5}],
            id="a replica that stopped running is forgotten",
        ),
    ],
)
def test_completions_from_the_replicas_counters(
    readings: list[tuple[Counters, set[str]]], expected: list[dict[str, int]]
) -> None:
    counter = CompletionCounter()
    assert [counter.update(counters, replicas=replicas) for counters, replicas in readings] == expected
