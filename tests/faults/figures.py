"""The fault suite writes its own figures: one row per test and backend in ``docs/reliability-figures.md``.

Each run of a fault test replaces its row (the other rows stay), so the table always holds the
last run of every test on the machine that ran it; ``docs/reliability.md`` points there instead of
holding figures copied by hand.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "reliability-figures.md"

COLUMNS = [
    "test",
    "backend",
    "machine",
    "capacity/s",
    "load/s",
    "submitted",
    "acknowledged",
    "503",
    "500",
    "no answer",
    "faults",
    "outage s",
    "recovery s",
    "completed",
    "lost",
    "ran twice",
    "run at",
]

INTRO = """\
# Fault suite figures

<!-- Written by tests/faults (figures.py) on every run of a fault test; do not edit by hand. -->

The last run of each fault test ([reliability.md](reliability.md#how-it-is-tested) says what each
one does), as the suite wrote it. *capacity* is what the test measured in its own warm-up
(requests completed per second by the whole cluster); the load then submits at 80% of it, with a
status read after every fourth submission. *503* and *no answer* count answers to submissions and
status reads alike, and each fell inside an outage window (from the fault until a submission was
acknowledged again: *outage*, the sum over the test's faults; *recovery*, the longest time from
healing to the next acknowledgement). *lost* counts acknowledged requests that never completed
with their own payload; *ran twice*, those the user server started more than once (at-least-once
delivery at work).

"""


def _row(test: str, backend: str, f: dict[str, Any]) -> str:
    machine = f"{os.cpu_count()} cpu {platform.machine()}"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cells = [
        test,
        backend,
        machine,
        f"{f['capacity']:.0f}",
        f"{f['rate']:.0f}",
        f"{f['submitted']:,}",
        f"{f['acknowledged']:,}",
        f"{f['503']:,}",
        f"{f['500']:,}",
        f"{f['unanswered']:,}",
        str(f["faults"]),
        f"{f['outage']:.1f}",
        f"{f['recovery']:.1f}",
        f"{f['completed']:,}",
        f"**{f['lost']}**",
        f"{f['ran_twice']:,}",
        when,
    ]
    return "| " + " | ".join(cells) + " |"


def record(test: str, backend: str, figures: dict[str, Any]) -> None:
    """Replace the row of ``test`` on ``backend`` with ``figures`` (rows sorted, the rest kept)."""
    rows: dict[tuple[str, str], str] = {}
    if FIGURES.exists():
        for line in FIGURES.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if line.startswith("| ") and len(cells) > 2 and cells[0] not in ("test", "---"):
                rows[(cells[0], cells[1])] = line
    rows[(test, backend)] = _row(test, backend, figures)
    header = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"
    text = INTRO + header + "".join(rows[key] + "\n" for key in sorted(rows))
    partial = FIGURES.with_suffix(".md.partial")
    partial.write_text(text)
    partial.replace(FIGURES)
