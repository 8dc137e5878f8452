"""``docs/benchmarks.md``: the machine, the commands, the table of figures and ratios, the goals."""

from __future__ import annotations

import re
from typing import Any

from bench.dequeuer_start import section as start_section
from bench.figures import Row, drain_profile, goals, profile_facts, run_facts
from bench.wake import section as wake_section

_SCENARIOS = {
    "a": "submit throughput",
    "b": "end-to-end overhead",
    "c": "dispatch throughput",
    "d": "do-it-yourself stacks",
    "e": "memory",
    "f": "queue and record backends",
    "k": "keep-alive with a server writing head and body apart",
    "w": "gateway CPU with idle waiters",
    "z": "wake from zero",
}


def render(results: dict[str, Any], table: list[Row], notes: str) -> str:
    """The whole page."""
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run` (the harness in `bench/`, issues 5 and 19); the raw figures of every run are in",
        "`bench/results.json`. Each figure is the median of "
        f"{settings['runs']} run(s); every baseline was measured in the same run, on the same machine,",
        "so only the ratios travel to another machine.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "## Commands",
        "",
        "```",
        *results["commands"],
        "```",
        "",
        "## Figures",
        "",
        "Ratio is value ÷ baseline.",
        "",
        "| | figure | value | baseline | ratio | goal | met |",
        "|---|---|---:|---:|---:|---|---|",
        *(_row(row) for row in table),
        "",
        *wake_section(results),
        *start_section(results),
        *_goals(results),
        *drain_profile(results),
        fill(notes, profile_facts(results) | run_facts(results)).strip(),
        "",
    ]
    return "\n".join(lines)


def _goals(results: dict[str, Any]) -> list[str]:
    """Issue 19's goals, each with this run's figure and whether it is met (written whether met or not)."""
    return [
        "## Goals (issue 19)",
        "",
        "Each against the figures of the table above, from this run; written by `bench/report.py`.",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *(
            f"| {g.goal} | {g.measured} | {'' if g.met is None else ('**yes**' if g.met else '**no**')} |"
            for g in goals(results)
        ),
        "",
    ]


def fill(notes: str, facts: dict[str, str]) -> str:
    """``notes`` with each ``{{name}}`` replaced by the figure of that name (so prose quotes the harness)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in facts:
            raise KeyError(f"bench/notes.md names {{{{{name}}}}}, which this run's results do not have")
        return facts[name]

    return re.sub(r"\{\{([^{}]+)\}\}", one, notes)


def _row(row: Row) -> str:
    baseline = "" if row.baseline_value is None else f"{_num(row.baseline_value)} ({row.baseline})"
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    met = "" if row.met is None else ("**yes**" if row.met else "**no**")
    return (
        f"| {row.scenario} | {row.figure} | {_num(row.value)} {row.unit} | {baseline} | {ratio} | {row.goal} | {met} |"
    )


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def scenario_name(key: str) -> str:
    """The name of scenario ``key`` (a-f)."""
    return _SCENARIOS[key]
