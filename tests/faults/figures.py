"""The fault suite writes its own figures: ``docs/reliability-figures.json``, and the page made from it.

Each run of a fault test replaces its entry (keyed by test and backend; the others stay) in the
JSON file, then ``docs/reliability-figures.md`` is written again from the whole file. So the page
always holds the last run of every test on the machine that ran it, and ``docs/reliability.md``
points there instead of holding figures copied by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"
FIGURES = DOCS / "reliability-figures.json"
PAGE = DOCS / "reliability-figures.md"

#: (column, key in a run's figures, format)
RUN_COLUMNS = [
    ("test", "test", "{}"),
    ("backend", "backend", "{}"),
    ("capacity/s", "capacity", "{:.0f}"),
    ("load/s", "rate", "{:.0f}"),
    ("load s", "loaded", "{:.0f}"),
    ("submitted", "submitted", "{:,}"),
    ("acknowledged", "acknowledged", "{:,}"),
    ("503", "503", "{:,}"),
    ("500", "500", "{:,}"),
    ("no answer", "unanswered", "{:,}"),
    ("faults", "faults", "{}"),
    ("completed", "completed", "{:,}"),
    ("lost", "lost", "**{}**"),
    ("ran twice", "ran_twice", "{:,}"),
    ("machine", "machine", "{}"),
    ("run at", "at", "{}"),
]

INTRO = """\
# Fault suite figures

<!-- Written by tests/faults/figures.py from reliability-figures.json on every run of a fault test.
     Do not edit by hand: rerun the suite (.venv/bin/pytest tests/faults). -->

The last run of each fault test, as the suite wrote it; [reliability.md](reliability.md#how-it-is-tested)
says what each one does.

## Runs

*capacity* is what the test measured in its own warm-up (requests completed per second by the
whole cluster); the load then submitted at 80% of it for *load s* seconds, with a status read after
every fourth submission. *503*, *500* and *no answer* count answers to submissions and status reads
alike; every 503 and every missing answer fell inside an outage window (below). *lost* counts
acknowledged requests that did not complete with their own id and payload; *ran twice*, those the
user server started more than once (at-least-once delivery at work).

"""

WINDOWS = """
## Outage windows

Each fault's window runs from its injection until a submission was acknowledged again after it
healed (for a killed cortex process: until the cluster had restarted it and every replica was
ready again). *recovery* is the part after healing: from the restarted server (or the freed disk)
to the next acknowledgement.

| test | backend | fault | window s | recovery s | 503 | no answer |
|---|---|---|---|---|---|---|
"""


def _table(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(fmt.format(row[key]) for _, key, fmt in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(runs: list[dict[str, Any]]) -> str:
    """The page for ``runs`` (each a test's figures with its outage windows)."""
    windows = "".join(
        f"| {run['test']} | {run['backend']} | {w['name']} | {w['seconds']:.1f} | {w['recovery']:.2f} "
        f"| {w['503']:,} | {w['unanswered']:,} |\n"
        for run in runs
        for w in run["windows"]
    )
    return INTRO + _table(RUN_COLUMNS, runs) + WINDOWS + windows


def record(test: str, backend: str, figures: dict[str, Any]) -> None:
    """Replace the entry of ``test`` on ``backend`` with ``figures``, then write the page again."""
    runs = json.loads(FIGURES.read_text()) if FIGURES.exists() else []
    runs = [run for run in runs if (run["test"], run["backend"]) != (test, backend)]
    runs.append(
        {
            "test": test,
            "backend": backend,
            "machine": f"{os.cpu_count()} cpu {platform.machine()}",
            "at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            **figures,
        }
    )
    runs.sort(key=lambda run: (run["test"], run["backend"]))
    for path, text in ((FIGURES, json.dumps(runs, indent=1) + "\n"), (PAGE, render(runs))):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        partial.replace(path)
