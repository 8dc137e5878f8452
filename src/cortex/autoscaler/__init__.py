"""The autoscaler: Cortex's algorithm (:mod:`.policy`) driven by a thin loop (:mod:`.loop`)."""

from __future__ import annotations

from cortex.autoscaler.events import ScalingEvent, ScalingEvents
from cortex.autoscaler.loop import DEFAULT_TICK, Autoscaler, Reading, TickListener
from cortex.autoscaler.policy import Decision, Recommendation, Sample, decide

__all__ = [
    "DEFAULT_TICK",
    "Autoscaler",
    "Decision",
    "Reading",
    "Recommendation",
    "Sample",
    "ScalingEvent",
    "ScalingEvents",
    "TickListener",
    "decide",
]
