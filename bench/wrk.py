"""``wrk`` with a 1 KiB JSON POST body from a Lua script, and its report parsed."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from bench.procs import pinned

#: a JSON document of exactly 1024 bytes
BODY = '{"data":"' + "x" * 1013 + '"}'
assert len(BODY) == 1024

LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclasses.dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run reported."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int  #: answers received
    errors: int  #: non-2xx answers plus socket errors
    command: str


def write_script(folder: Path) -> Path:
    """The Lua script, written into ``folder``."""
    path = folder / "post-1k.lua"
    path.write_text(LUA)
    return path


def run(
    url: str, script: Path, *, seconds: float, cpu: int | None, threads: int = 1, connections: int = 64
) -> WrkResult:
    """Run wrk against ``url`` (pinned to ``cpu`` when possible) and parse its report."""
    argv = pinned(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url], cpu
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return WrkResult(
        requests_per_s=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_latency(out, "50%"),
        p99_ms=_latency(out, "99%"),
        requests=int(_find(r"(\d+) requests in", out)),
        errors=_errors(out),
        command=" ".join(argv),
    )


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"wrk's report has no {pattern!r}:\n{text}")
    return match.group(1)


def _latency(out: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    return float("nan") if match is None else float(match.group(1)) * _UNITS[match.group(2)]


def _errors(out: str) -> int:
    errors = 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if match:
        errors += int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        errors += sum(int(g) for g in match.groups())
    return errors
