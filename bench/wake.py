"""Wake from zero (issue 19): from the first request to an idle ``min_replicas: 0`` API to its dispatch.

A local cluster with the default autoscaler tick (10 s, as a user gets it). Each trial deploys a
fresh API at zero replicas, whose user server (``bench/wake_server.py``, stdlib only) writes down
when its script started, when it listened and when the first ``POST /`` reached it; after an idle
pause of a random length (the request lands anywhere in the autoscaler's tick), the harness submits
one request. The server's own start (``server_start_s``: from its spawn to a connect that succeeds)
is measured separately, by starting it alone, outside any cluster. Per trial, in seconds:

- ``wake_s``: submit → dispatch at the user server, less the server's own start (its median): what
  the platform adds, the figure of the goal (at most 1 s);
- ``decide_s``: submit → the autoscaling event ``0 -> 1`` (its decision time);
- ``spawn_s``: the decision → the server's script started (the runtime's start of the replica,
  and the interpreter's);
- ``listen_s``: the script started → listening (the server's imports and bind, in the cluster);
- ``ready_take_s``: listening → dispatched (the readiness probe's first pass, the dequeuer's first take,
  the forward).

``python -m bench.wake [--trials N] [--backend sqlite|redis|postgres]... [--tick S] [--slow S]`` runs
each backend (default all three, on the test servers of ``bench/backends.py``), then the first one
again with a server that sleeps ``--slow`` seconds (default 2) before it listens, where the readiness
probe's first pass shows. It writes the figures into ``bench/results.json`` under ``wake_from_zero``
(one entry per run) and prints the table of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.backends import POSTGRES, REDIS, _namespace
from bench.cluster import Cluster
from bench.procs import REPO, free_port

SERVER = REPO / "bench" / "wake_server.py"
RESULTS = REPO / "bench" / "results.json"
#: the goal of issue 19: what the platform adds to a wake, at most
GOAL_S = 1.0
#: each backend's URL base, as in scenario (f): the test servers (None: the embedded SQLite)
BACKENDS: dict[str, str | None] = {"sqlite": None, "redis": REDIS, "postgres": POSTGRES}
#: the autoscaler's tick: cortex's default, as a user gets it
TICK_S = 10.0
#: how long the slow run's server sleeps before it listens (a model loading)
SLOW_S = 2.0
#: the idle pause before each submit is drawn from this range (seconds): a tick's phase, at random
IDLE_S = (1.0, 4.0)


class WakeCluster(Cluster):
    """The benchmark's cluster, but with a real autoscaler tick."""

    def __init__(self, root: Path, *, backend_url: str | None, tick: float) -> None:
        super().__init__(root, backend_url=backend_url, env={"CORTEX_AUTOSCALER_WAKE": "1"})
        self.tick = tick
        self.tag = root.name

    @property
    def up_command(self) -> list[str]:
        command = super().up_command
        command[command.index("--autoscaler-tick") + 1] = f"{self.tick:g}"
        return command


def api_spec(name: str, trace: Path, delay: float) -> dict[str, Any]:
    """An API at zero replicas whose user server traces its start and first dispatch into ``trace``."""
    return {
        "name": name,
        "kind": "AsyncAPI",
        "pod": {
            "max_concurrency": 1,
            "containers": [
                {
                    "name": "api",
                    "command": [sys.executable, str(SERVER)],
                    "env": {"WAKE_TRACE": str(trace), "WAKE_DELAY": f"{delay:g}"},
                }
            ],
        },
        "autoscaling": {"min_replicas": 0, "max_replicas": 1},
    }


def server_start(delay: float, runs: int = 10) -> float:
    """The median time from spawning the user server alone to its port accepting a connection."""
    times = []
    for _ in range(runs):
        port = free_port()
        spawned = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(SERVER)], env={**os.environ, "CORTEX_PORT": str(port), "WAKE_DELAY": f"{delay:g}"}
        )
        try:
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if process.poll() is not None or time.perf_counter() - spawned > 30:
                    raise RuntimeError("the wake benchmark's user server did not start")
                time.sleep(0.002)
            times.append(time.perf_counter() - spawned)
        finally:
            process.terminate()
            process.wait(10)
    return statistics.median(times)


def one_trial(
    cluster: WakeCluster, work: Path, index: int, rng: random.Random, own_start: float, delay: float
) -> dict[str, float]:
    """Deploy a sleeping API, wait idle, submit once, and read where the time went."""
    name = f"wake-{index}"
    trace = work / f"trace-{cluster.tag}-{index}"
    trace.mkdir()
    cluster.deploy(api_spec(name, trace, delay), wait=False)
    time.sleep(rng.uniform(*IDLE_S))
    submitted = time.time()
    response = httpx.post(f"{cluster.gateway_url}/{name}", content=b"{}", timeout=10)
    response.raise_for_status()
    deadline = time.monotonic() + 120
    while not (times := _trace(trace)).get("dispatched"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: no dispatch within 120 s")
        time.sleep(0.02)
    woke = [e for e in cluster.client.describe(name)["autoscaling_events"] if e["from"] == 0 and e["to"] >= 1]
    decided = float(woke[0]["time"]) if woke else float("nan")
    cluster.delete(name)
    return {
        "total_s": times["dispatched"] - submitted,
        "wake_s": times["dispatched"] - submitted - own_start,
        "decide_s": decided - submitted,
        "spawn_s": times["started"] - decided,
        "listen_s": times["listening"] - times["started"],
        "ready_take_s": times["dispatched"] - times["listening"],
    }


def _trace(folder: Path) -> dict[str, float]:
    for path in folder.glob("*.json"):
        data: dict[str, float] = json.loads(path.read_text())
        return data
    return {}


def measure(
    work: Path, *, backend: str, trials: int, tick: float, delay: float = 0.0, seed: int = 19
) -> dict[str, Any]:
    """``trials`` wakes on one cluster of ``backend`` (servers that sleep ``delay`` s before they listen)."""
    base = BACKENDS[backend]
    rng = random.Random(seed)
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    own_start = server_start(delay)
    print(f"  wake: the user server starts alone in {own_start * 1000:.0f} ms", file=sys.stderr)
    rows = []
    with _namespace(backend, base) as url:
        cluster = WakeCluster(work / f"cluster-wake-{backend}-{delay:g}", backend_url=url, tick=tick)
        cluster.up()
        try:
            for index in range(trials):
                row = one_trial(cluster, work, index, rng, own_start, delay)
                rows.append(row)
                print(f"  wake {backend} trial {index + 1}: " + _line(row), file=sys.stderr)
        finally:
            cluster.down()
    summary = {
        f"{key}_{stat}": round(fn([row[key] for row in rows]), 4)
        for key in rows[0]
        for stat, fn in (("p50", statistics.median), ("max", max))
    }
    return {
        "tick_s": tick,
        "server_delay_s": delay,
        "load_average_1min_at_start": round(load, 2),
        "trials": len(rows),
        "server_start_s": round(own_start, 4),
        **summary,
        "runs": rows,
        "goal_s": GOAL_S,
    }


def measure_all(work: Path, backends: list[str], *, trials: int, tick: float, slow: float) -> dict[str, Any]:
    """Each backend in turn, then the first one again with a server that takes ``slow`` s to listen (unless 0)."""
    runs = [(backend, backend, 0.0) for backend in backends]
    if slow > 0:
        runs.append((f"{backends[0]}, server starting in {slow:g} s", backends[0], slow))
    figures = {}
    for label, backend, delay in runs:
        figures[label] = row = measure(work, backend=backend, trials=trials, tick=tick, delay=delay)
        print(
            f"wake from zero, {label}: p50 {row['wake_s_p50'] * 1000:.0f} ms, max {row['wake_s_max'] * 1000:.0f} ms",
            file=sys.stderr,
        )
    return figures


def _line(row: dict[str, float]) -> str:
    return ", ".join(f"{key[:-2]} {value * 1000:.0f} ms" for key, value in row.items())


def section(results: dict[str, Any]) -> list[str]:
    """The wake-from-zero rows of ``docs/benchmarks.md`` (nothing when the results hold none)."""
    wake = results.get("wake_from_zero")
    if not wake:
        return []
    lines = [
        "## Wake from zero",
        "",
        "From the first request to an idle API (`min_replicas: 0`) to its dispatch at the user server, less",
        "the user server's own start (measured alone: spawn to accepting), with the default autoscaler tick;",
        "`python -m bench.wake` (issue 19's goal: at most 1 s). Figures in ms, p50 / max over the trials.",
        "",
        "| run | trials | load | wake (goal ≤ 1000) | met | decision | replica spawn | server listens"
        " | ready + first take | server start alone |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in wake.items():
        load = row.get("load_average_1min_at_start")
        shown = "" if load is None else f"{load:.1f}"
        lines.append(
            f"| {label} | {row['trials']} | {shown} | {_ms(row, 'wake_s')} | {_met(row)}"
            f" | {_ms(row, 'decide_s')} | {_ms(row, 'spawn_s')} | {_ms(row, 'listen_s')} | {_ms(row, 'ready_take_s')}"
            f" | {row['server_start_s'] * 1000:.0f} |"
        )
    lines += [
        "",
        "*load* is the machine's 1-minute load average when the run began (2 cores, shared). *decision*: the",
        "request to the autoscaling event `0 -> 1`; *replica spawn*: that decision to the server's script",
        "running; *server listens*: the script to its socket listening; *ready + first take*: listening to",
        "the dispatch, which is mostly the dequeuer's own start (its interpreter and imports, about 0.3 s idle,",
        "more under load, in parallel with the server's). A server that takes longer to start than the",
        "dequeuer (the 2 s row, as a model loading) hides that, and its wake is the probe's next look.",
    ]
    return [*lines, ""]


def _met(row: dict[str, Any]) -> str:
    return "yes" if row["wake_s_max"] <= row["goal_s"] else "no"


def _ms(row: dict[str, Any], key: str) -> str:
    return f"{row[f'{key}_p50'] * 1000:.0f} / {row[f'{key}_max'] * 1000:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wake", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--backend", action="append", choices=("sqlite", "redis", "postgres"))
    parser.add_argument("--tick", type=float, default=TICK_S, help="the autoscaler's tick (cortex's default: 10)")
    parser.add_argument(
        "--slow",
        type=float,
        default=SLOW_S,
        help="also one run whose server sleeps this long before it listens (0: none)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--dry", action="store_true", help="print, do not write the results file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cortex-wake-") as tmp:
        figures = measure_all(
            Path(tmp), args.backend or list(BACKENDS), trials=args.trials, tick=args.tick, slow=args.slow
        )
    if not args.dry:
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        results["wake_from_zero"] = {**results.get("wake_from_zero", {}), **figures}
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(section({"wake_from_zero": figures})))


if __name__ == "__main__":
    main()
