"""Cortex's autoscaling decision for one API at one tick, as a pure function (reference §7).

:func:`decide` takes what a tick knows (the autoscaling spec, the replicas requested now, the
queue samples, the recommendation history, the time, and when the autoscaler started looking
at this API) and returns the decision and the new history. It does no I/O and reads no clock,
so every rule is checked by a table (``tests/autoscaler/test_policy.py``). Cortex's steps:

1. ``avg``: the mean of queued + in-flight over the samples of the last ``window`` seconds
   (no sample: skip the tick, "metrics not available yet");
2. ``raw = avg / target_in_flight``, ``rec = ceil(raw)``;
3. tolerance: ``cur·(1-downscale_tolerance) < raw < cur`` or ``cur < raw < cur·(1+upscale_tolerance)``
   keeps ``rec = cur``;
4. step limits: at least ``min(cur-1, ceil(cur·max_downscale_factor))``, at most
   ``max(cur+1, ceil(cur·max_upscale_factor))`` (a step of one is always allowed);
5. clamp to ``[min_replicas, max_replicas]``;
6. append ``(now, rec)`` to the history, drop entries older than the longer stabilization period;
7. below ``cur``: hold at ``cur`` while the autoscaler has run the API for less than
   ``downscale_stabilization_period`` (the start-up hold), else no lower than the highest
   recommendation of that period (capped at ``cur``); above ``cur``: the same with
   ``upscale_stabilization_period`` and the lowest recommendation (floored at ``cur``);
8. a request other than ``cur`` is an autoscaling event.

Step 7 caps the floor at ``cur`` and floors the ceiling at ``cur`` as the reference states it;
Cortex's Go code omits both bounds, which could turn a scale-in into a scale-out (and back) when
an older, higher recommendation is remembered. With the bounds, a downscale never becomes an
upscale, which is what the stabilization is for.

**Departure from Cortex: wake from zero.** When ``cur`` is 0 and the latest sample shows work
(queued or in flight), the request is 1 at once, whatever the upscale stabilization period and
the start-up hold say. Cortex kept an API with no replica asleep for a whole
``upscale_stabilization_period`` (1 minute by default) after work arrived, because the ceiling is
the *lowest* recommendation of that period. The algorithm's own 0 → 1 step (the ``+1`` minimum)
is unchanged; only the wait is gone. ``wake_from_zero=False`` gives Cortex's exact decision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from cortex.spec import Autoscaling, format_duration


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One reading of an API's queue.

    Attributes:
        at: When it was read (seconds on the caller's clock).
        queued: Requests waiting for a worker.
        in_flight: Requests leased by a worker.
    """

    at: float
    queued: int
    in_flight: int

    @property
    def total(self) -> int:
        """Queued plus in flight: Cortex's ``cortex_async_in_flight``."""
        return self.queued + self.in_flight


@dataclasses.dataclass(frozen=True, slots=True)
class Recommendation:
    """One tick's recommendation (after step limits and clamping, before stabilization)."""

    at: float
    replicas: int


#: the recommendations of the longer stabilization period, oldest first
History = tuple[Recommendation, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What one tick decided, with the intermediate values for the logs.

    Attributes:
        current: The replicas requested before the tick (``cur``).
        request: The replicas to request now.
        reason: Why, in words (logged and shown by ``cortex describe``).
        avg_in_flight: The mean of queued + in flight over the window; None when there was no sample.
        raw: ``avg_in_flight / target_in_flight``.
        recommendation: The recommendation recorded in the history (after steps 3-5).
        woke: Whether wake-from-zero decided the request.
    """

    current: int
    request: int
    reason: str
    avg_in_flight: float | None = None
    raw: float | None = None
    recommendation: int | None = None
    woke: bool = False

    @property
    def changed(self) -> bool:
        """Whether the request differs from the current count (an autoscaling event)."""
        return self.request != self.current


def decide(
    autoscaling: Autoscaling,
    current: int,
    samples: Sequence[Sample],
    history: Sequence[Recommendation],
    *,
    now: float,
    started_at: float,
    wake_from_zero: bool = True,
) -> tuple[Decision, History]:
    """Cortex's decision for one tick, plus cortex-async's wake from zero.

    Args:
        autoscaling: The API's autoscaling spec (durations in seconds).
        current: The replicas requested now.
        samples: Queue readings, oldest first; those of the last ``window`` seconds count.
        history: The recommendations returned by the previous tick.
        now: The time of this tick, on the clock of ``samples`` and ``history``.
        started_at: When the autoscaler first ticked for this API (the start-up hold counts from it).
        wake_from_zero: Request 1 at once when ``current`` is 0 and the latest sample shows work.

    Returns:
        The decision and the history to pass to the next tick.
    """
    a = autoscaling
    recent = [s for s in samples if now - a.window < s.at <= now]
    if not recent:
        return Decision(current, current, "metrics not available yet"), tuple(history)

    avg = sum(s.total for s in recent) / len(recent)
    raw = avg / a.target_in_flight
    rec, notes = _recommend(a, current, raw)
    horizon = max(a.downscale_stabilization_period, a.upscale_stabilization_period)
    kept = (*(h for h in history if now - h.at <= horizon), Recommendation(now, rec))
    request, held = _stabilize(a, current, rec, kept, now=now, running=now - started_at)
    notes += held

    latest = recent[-1]
    woke = wake_from_zero and current == 0 and request == 0 and latest.total > 0
    if woke:
        request = 1  # max_replicas is at least 1
        reason = f"wake from zero: {latest.queued} queued, {latest.in_flight} in flight"
    else:
        reason = f"{avg:.2f} in flight on average over {format_duration(a.window)}, target {a.target_in_flight:g}"
        reason += f" -> {math.ceil(raw)}" + "".join(f"; {note}" for note in notes)
    decision = Decision(current, request, reason, avg_in_flight=avg, raw=raw, recommendation=rec, woke=woke)
    return decision, kept


def _recommend(a: Autoscaling, current: int, raw: float) -> tuple[int, list[str]]:
    """Steps 2-5: the recommendation from ``raw``, with why it differs from ``ceil(raw)``."""
    rec = math.ceil(raw)
    notes: list[str] = []
    if current * (1 - a.downscale_tolerance) < raw < current or current < raw < current * (1 + a.upscale_tolerance):
        rec = current
        notes.append(f"within tolerance of {current}")
    down_floor = min(current - 1, math.ceil(current * a.max_downscale_factor))
    if rec < down_floor:
        rec = down_floor
        notes.append(f"downscale step limit {down_floor}")
    up_ceiling = max(current + 1, math.ceil(current * a.max_upscale_factor))
    if rec > up_ceiling:
        rec = up_ceiling
        notes.append(f"upscale step limit {up_ceiling}")
    if rec < a.min_replicas:
        rec = a.min_replicas
        notes.append(f"min_replicas {rec}")
    if rec > a.max_replicas:
        rec = a.max_replicas
        notes.append(f"max_replicas {rec}")
    return rec, notes


def _stabilize(
    a: Autoscaling, current: int, rec: int, history: History, *, now: float, running: float
) -> tuple[int, list[str]]:
    """Step 7: the request after the stabilization floor or ceiling and the start-up hold."""
    request = rec
    notes: list[str] = []
    if request < current:
        period = a.downscale_stabilization_period
        floor = min(max(h.replicas for h in history if now - h.at <= period), current)
        if running < period:
            request = current
            notes.append(_hold(running, "downscale_stabilization_period", period))
        elif request < floor:
            request = floor
            notes.append(f"downscale stabilization floor {floor} (highest of the last {format_duration(period)})")
    if request > current:
        period = a.upscale_stabilization_period
        ceiling = max(min(h.replicas for h in history if now - h.at <= period), current)
        if running < period:
            request = current
            notes.append(_hold(running, "upscale_stabilization_period", period))
        elif request > ceiling:
            request = ceiling
            notes.append(f"upscale stabilization ceiling {ceiling} (lowest of the last {format_duration(period)})")
    return request, notes


def _hold(running: float, field: str, period: float) -> str:
    return f"start-up hold: autoscaling for {format_duration(round(running, 1))} < {field} {format_duration(period)}"
