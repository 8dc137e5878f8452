"""Percentiles and medians of the figures the scenarios measure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else float("nan")


def ms(seconds: Sequence[float]) -> list[float]:
    """Seconds to milliseconds."""
    return [s * 1000.0 for s in seconds]


def latency_summary(samples_s: Sequence[float], *, minus_ms: float = 0.0) -> dict[str, float]:
    """p50/p99 in milliseconds (less ``minus_ms``) and the sample count."""
    values = ms(samples_s)
    return {
        "p50_ms": percentile(values, 50) - minus_ms,
        "p99_ms": percentile(values, 99) - minus_ms,
        "n": float(len(values)),
    }


def median_of_runs(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key by key, the median over repeated runs (keys missing from a run are skipped)."""
    keys = {key for run in runs for key in run}
    return {key: median([run[key] for run in runs if key in run]) for key in sorted(keys)}
