"""The Goals section of docs/benchmarks.md is written from the results, whether met or not (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest
from bench.figures import goals


def _wake(results: dict[str, Any]) -> tuple[str, bool | None]:
    (goal,) = [g for g in goals(results) if g.goal.startswith("wake from zero")]
    return goal.measured, goal.met


@pytest.mark.parametrize(
    ("raw", "measured", "met"),
    [
        (0.8, "0.80 s", True),
        (1.5, "1.50 s", False),
        (
            {"sqlite": {"wake_s_p50": 0.42}, "redis": {"wake_s_p50": 0.77}},
            "0.77 s p50, the slowest of 2 runs (redis)",
            True,
        ),
        (
            {"sqlite": {"wake_s_p50": 0.42}, "postgres": {"wake_s_p50": 1.2}},
            "1.20 s p50, the slowest of 2 runs (postgres)",
            False,
        ),
    ],
)
def test_wake_from_zero_is_read_from_the_results(raw: object, measured: str, met: bool) -> None:
    assert _wake({"wake_from_zero": raw}) == (measured, met)


def test_a_figure_not_measured_says_so_and_is_neither_met_nor_missed() -> None:
    listed = goals({})
    assert len(listed) == 6
    assert all(g.measured.startswith("not measured") and g.met is None for g in listed)


def test_dispatch_and_submit_goals_come_from_the_same_run() -> None:
    results = {
        "submit": {"runs": [{"ratio": 0.9}, {"ratio": 0.7}, {"ratio": 0.85}]},
        "dispatch": {
            "runs": [{"completions_per_s": 4000.0}, {"completions_per_s": 6000.0}, {"completions_per_s": 5500.0}]
        },
    }
    by_goal = {g.goal: (g.measured, g.met) for g in goals(results)}
    assert by_goal["submit throughput &ge; 0.8x bare Starlette"] == ("0.85x", True)
    assert by_goal["dispatch &ge; 5,000 completions/s"] == ("5,500 completions/s", True)
