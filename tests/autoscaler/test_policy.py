"""Cortex's autoscaling decisions, one table row per rule (reference §7), plus the wake from zero.

Every row is one tick: the spec's knobs that differ from a neutral baseline, the replicas requested
now (``cur``), the queue samples, the recommendation history, how long the autoscaler has run the
API, and the request Cortex makes. The baseline has no stabilization (periods of 0s), so each row
shows the one rule it is about; the spec's real defaults are in the rows about them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cortex.autoscaler.policy import Recommendation, Sample, decide
from cortex.spec import Autoscaling

NOW = 100_000.0
#: neither stabilization nor start-up hold, unless a row asks for them
NEUTRAL: dict[str, Any] = {
    "min_replicas": 0,
    "downscale_stabilization_period": 0.0,
    "upscale_stabilization_period": 0.0,
}


def steady(total: float, *, window: float = 60.0, every: float = 10.0) -> list[Sample]:
    """Samples filling the window, oldest first, whose mean is ``total``."""
    count = round(window / every)
    whole = int(total)
    extra = round((total - whole) * count)  # that many samples one higher, to reach the mean
    return [Sample(NOW - i * every, whole + (1 if i < extra else 0), 0) for i in reversed(range(count))]


@dataclasses.dataclass(frozen=True)
class Row:
    knobs: dict[str, Any]
    cur: int
    samples: list[Sample]
    expected: int
    reason: str = ""  #: a fragment of the decision's reason
    history: tuple[Recommendation, ...] = ()
    running: float = 10_000.0  #: seconds since the autoscaler first ticked for the API
    cortex: int | None = None  #: Cortex's request, where our wake from zero differs from it


ROWS = {
    # steps 1-2: the mean of queued + in flight over the window, divided by target_in_flight, rounded up
    "at target: no change": Row({}, 4, steady(4), 4),
    "mean over the window": Row({}, 1, [Sample(NOW - 20, 0, 0), Sample(NOW - 10, 0, 0), Sample(NOW, 6, 0)], 2),
    "queued and in flight both count": Row({}, 2, [Sample(NOW, 1, 2)], 3),
    "a sample as old as the window is out of it": Row({}, 2, [Sample(NOW - 60, 50, 0), Sample(NOW, 2, 0)], 2),
    "target_in_flight divides": Row({"target_in_flight": 4}, 3, steady(10), 3),
    "rounded up": Row({}, 2, steady(2.5), 3),
    "no sample in the window: skip": Row({}, 3, [Sample(NOW - 61, 9, 0)], 3, "metrics not available yet"),
    "no sample at all: skip": Row({}, 3, [], 3, "metrics not available yet"),
    # step 3: tolerance
    "downscale tolerance holds": Row({"downscale_tolerance": 0.2}, 10, steady(8.5), 10, "within tolerance"),
    "below downscale tolerance": Row({"downscale_tolerance": 0.2}, 10, steady(7.5), 8),
    "without downscale tolerance": Row({"downscale_tolerance": 0.0}, 10, steady(8.5), 9),
    "default tolerance holds at 40": Row({}, 40, steady(38.5), 40, "within tolerance"),
    "upscale tolerance holds": Row({"upscale_tolerance": 0.2}, 10, steady(11.5), 10, "within tolerance"),
    "upscale tolerance is exclusive": Row({"upscale_tolerance": 0.25}, 10, steady(12.5), 13),
    "without upscale tolerance": Row({"upscale_tolerance": 0.0}, 10, steady(11.5), 12),
    # step 4: step limits, with the +-1 minimum
    "downscale step limit": Row({}, 8, steady(0), 6, "downscale step limit 6"),
    "downscale step limit at 3": Row({}, 3, steady(0), 2, "downscale step limit 2"),
    "a decrease of 1 is always allowed": Row({}, 2, steady(0), 1, "downscale step limit 1"),
    "max_downscale_factor 0.5": Row({"max_downscale_factor": 0.5}, 8, steady(0), 4),
    "upscale step limit": Row({}, 4, steady(100), 6, "upscale step limit 6"),
    "upscale step limit from 1": Row({}, 1, steady(100), 2, "upscale step limit 2"),
    "an increase of 1 is always allowed (from 0)": Row({}, 0, steady(100), 1, "upscale step limit 1"),
    # 25 * 1.12 is 28.000000000000004 in float64, in Go as in Python: the limit is 29, not 28
    "float64 rounding as Go's": Row({"max_upscale_factor": 1.12}, 25, steady(100), 29, "upscale step limit 29"),
    # step 5: clamping, after the step limits
    "clamped to max_replicas": Row({"max_replicas": 5}, 4, steady(100), 5, "max_replicas 5"),
    "clamped to min_replicas": Row({"min_replicas": 3}, 3, steady(0), 3, "min_replicas 3"),
    "min_replicas beats the step limit": Row({"min_replicas": 2}, 0, steady(0), 2, "min_replicas 2"),
    # step 7, downscale: the floor is the highest recommendation of the period, capped at cur
    "downscale stabilization floor": Row(
        {"downscale_stabilization_period": 300.0},
        10,
        steady(2),
        9,
        "downscale stabilization floor 9",
        history=(Recommendation(NOW - 250, 9),),
    ),
    "a recommendation older than the period is forgotten": Row(
        {"downscale_stabilization_period": 300.0}, 10, steady(2), 8, history=(Recommendation(NOW - 301, 10),)
    ),
    # Cortex's Go code lacks the cap and would request 8 here (reference §7 has it)
    "the floor is capped at cur": Row(
        {"downscale_stabilization_period": 300.0, "upscale_stabilization_period": 60.0},
        10,
        steady(2),
        10,
        history=(Recommendation(NOW - 100, 12),),
    ),
    "downscale start-up hold": Row(
        {"downscale_stabilization_period": 300.0}, 10, steady(2), 10, "start-up hold", running=299.0
    ),
    "downscale start-up hold over": Row({"downscale_stabilization_period": 300.0}, 10, steady(2), 8, running=300.0),
    # step 7, upscale: the ceiling is the lowest recommendation of the period, floored at cur
    "upscale stabilization ceiling": Row(
        {"upscale_stabilization_period": 60.0},
        4,
        steady(100),
        5,
        "upscale stabilization ceiling 5",
        history=(Recommendation(NOW - 30, 5),),
    ),
    "an old low recommendation no longer caps": Row(
        {"upscale_stabilization_period": 60.0}, 4, steady(100), 6, history=(Recommendation(NOW - 61, 1),)
    ),
    "the ceiling is floored at cur": Row(
        {"upscale_stabilization_period": 60.0}, 4, steady(100), 4, history=(Recommendation(NOW - 30, 2),)
    ),
    "upscale start-up hold": Row(
        {"upscale_stabilization_period": 60.0}, 4, steady(100), 4, "start-up hold", running=59
    ),
    "upscale start-up hold over": Row({"upscale_stabilization_period": 60.0}, 4, steady(100), 6, running=60.0),
    "Cortex's defaults, the first minute": Row(
        dict.fromkeys(NEUTRAL, None), 4, steady(100), 4, "upscale_stabilization_period 1m", running=30
    ),
    # scale to zero: only once the whole window was empty
    "scale to zero": Row({}, 1, steady(0), 0),
    "no scale to zero while work remains in the window": Row(
        {}, 1, [Sample(NOW - 50, 0, 1), *[Sample(NOW - i * 10, 0, 0) for i in range(4, -1, -1)]], 1
    ),
    "scale to zero after the downscale period": Row(
        {"downscale_stabilization_period": 300.0},
        1,
        steady(0),
        0,
        history=tuple(Recommendation(NOW - t, 0) for t in (290, 200, 100)),
    ),
    "no scale to zero within the downscale period": Row(
        {"downscale_stabilization_period": 300.0},
        1,
        steady(0),
        1,
        "downscale stabilization floor 1",
        history=(Recommendation(NOW - 290, 1),),
    ),
    # 0 -> 1: wake from zero (ours) against Cortex
    "wake from zero during the start-up hold": Row(
        {"upscale_stabilization_period": 60.0},
        0,
        [Sample(NOW, 1, 0)],
        1,
        "wake from zero: 1 queued, 0 in flight",
        running=5,
        cortex=0,
    ),
    "wake from zero against the upscale ceiling": Row(
        {"upscale_stabilization_period": 60.0},
        0,
        [*[Sample(NOW - i * 10, 0, 0) for i in range(5, 0, -1)], Sample(NOW, 0, 2)],
        1,
        "wake from zero: 0 queued, 2 in flight",
        history=(Recommendation(NOW - 50, 0), Recommendation(NOW - 10, 0)),
        cortex=0,
    ),
    "0 -> 1 without stabilization, as Cortex": Row({}, 0, steady(5), 1, "upscale step limit 1"),
    "no wake when the latest sample is empty": Row(
        {"upscale_stabilization_period": 60.0}, 0, [Sample(NOW - 10, 3, 0), Sample(NOW, 0, 0)], 0, running=5
    ),
    "no wake above zero": Row({"upscale_stabilization_period": 60.0}, 1, steady(5), 1, "start-up hold", running=5),
    "wake requests 1 even with a long queue": Row(
        {"upscale_stabilization_period": 60.0}, 0, [Sample(NOW, 500, 0)], 1, "wake from zero", running=0, cortex=0
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_decision(row: Row) -> None:
    knobs = {key: value for key, value in {**NEUTRAL, **row.knobs}.items() if value is not None}
    spec = Autoscaling(**knobs)  # a knob set to None keeps Cortex's default
    decision, _ = decide(spec, row.cur, row.samples, row.history, now=NOW, started_at=NOW - row.running)
    assert decision.request == row.expected, decision.reason
    assert decision.current == row.cur
    assert decision.changed == (row.expected != row.cur)
    assert row.reason in decision.reason

    cortex, _ = decide(
        spec, row.cur, row.samples, row.history, now=NOW, started_at=NOW - row.running, wake_from_zero=False
    )
    assert cortex.request == (row.expected if row.cortex is None else row.cortex)
    assert decision.woke == (row.cortex is not None)


def test_history_records_the_recommendation_and_forgets_past_the_longer_period() -> None:
    spec = Autoscaling(downscale_stabilization_period=300.0, upscale_stabilization_period=60.0)
    old = (Recommendation(NOW - 301, 7), Recommendation(NOW - 299, 5), Recommendation(NOW - 10, 4))
    decision, history = decide(spec, 4, steady(100), old, now=NOW, started_at=0.0)
    # the recommendation (6, after the step limit) is recorded before the ceiling (4) applies
    assert decision.recommendation == 6 and decision.request == 4
    assert history == (Recommendation(NOW - 299, 5), Recommendation(NOW - 10, 4), Recommendation(NOW, 6))


def test_a_skipped_tick_keeps_the_history() -> None:
    old = (Recommendation(NOW - 10, 4),)
    decision, history = decide(Autoscaling(), 4, [], old, now=NOW, started_at=0.0)
    assert not decision.changed and decision.avg_in_flight is None and history == old


def test_intermediate_values_are_reported() -> None:
    decision, _ = decide(Autoscaling(**NEUTRAL, target_in_flight=2), 1, steady(5), (), now=NOW, started_at=0.0)
    assert (decision.avg_in_flight, decision.raw, decision.recommendation, decision.request) == (5.0, 2.5, 2, 2)
    assert decision.reason == "5.00 in flight on average over 1m, target 2 -> 3; upscale step limit 2"


def test_cortex_from_zero_with_default_periods_waits_a_whole_upscale_period() -> None:
    """Ticks every 10 s, idle, then one request queued at t=0: Cortex's first replica comes at 60 s, ours at 0 s."""
    spec = Autoscaling(min_replicas=0)  # Cortex's defaults otherwise: window 60s, upscale period 1m
    first: dict[bool, int] = {}
    for wake in (True, False):
        cur = 0
        history: tuple[Recommendation, ...] = ()
        samples: list[Sample] = []
        for t in range(-120, 120, 10):
            work = t >= 0
            samples.append(Sample(NOW + t, int(work and cur == 0), int(work and cur > 0)))
            decision, history = decide(
                spec, cur, samples, history, now=NOW + t, started_at=NOW - 600, wake_from_zero=wake
            )
            if decision.changed:
                first.setdefault(wake, t)
                cur = decision.request
    assert first == {True: 0, False: 60}
