"""The harness: start local clusters in a temporary folder, run scenarios (a)-(f), (k) and (w), write the report.

``python -m bench [--quick] [--only a,b,c,d,f,k,w]``; ``bench/run`` installs what it needs first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import backends, dispatch, diy, e2e, keepalive, machine, report, submit, waiters, wake
from bench.cluster import Cluster
from bench.figures import rows
from bench.procs import REPO

NOTES_FILE = REPO / "bench" / "notes.md"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How long and how often each scenario runs."""

    runs: int = 3
    wrk_seconds: float = 10.0
    wrk_warmup: float = 2.0
    sequential: int = 300
    clients: int = 8
    per_client: int = 100
    dispatch_requests: int = 20_000
    replicas: int = 2
    max_concurrency: int = 8
    diy_submits: int = 5_000
    waiters: int = 1_000
    waiter_window: float = 10.0
    keepalive_count: int = 200

    @classmethod
    def quick(cls) -> Settings:
        """One short run of everything (to check the harness, not to quote)."""
        return cls(
            runs=1, wrk_seconds=3.0, wrk_warmup=1.0, sequential=200, per_client=30,
            dispatch_requests=3_000, diy_submits=1_000, waiter_window=3.0, keepalive_count=40,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios; write docs/benchmarks.md and bench/results.json."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short run of each scenario")
    parser.add_argument("--runs", type=int, help="repetitions of each scenario (default 3)")
    parser.add_argument(
        "--only", default="a,b,c,d,f,k,w,z", help="scenarios to run, of a,b,c,d,f,k,w,z (e is measured in a and c)"
    )
    parser.add_argument("--replicas", type=int, help="replicas in scenario (c) (default 2)")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, state)")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from the results file")
    parser.add_argument(
        "--merge", action="store_true", help="keep the figures of the results file that this run does not measure"
    )
    args = parser.parse_args(argv)
    if args.render:
        write_report(json.loads(args.results.read_text()), args.doc)
        return
    settings = Settings.quick() if args.quick else Settings()
    if args.runs:
        settings = dataclasses.replace(settings, runs=args.runs)
    if args.replicas:
        settings = dataclasses.replace(settings, replicas=args.replicas)
    only = set(args.only.split(","))
    if "d" in only and not diy.redis_up():
        print(f"(d) skipped: no Redis answers at {diy.REDIS_URL}", file=sys.stderr)
        only.discard("d")
    work = Path(tempfile.mkdtemp(prefix="cortex-bench-"))
    print(f"cortex-async benchmarks (work folder {work})", file=sys.stderr)
    try:
        results = run(settings, only, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.merge and args.results.exists():
        results = merged(json.loads(args.results.read_text()), results, only)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.doc)
    print(f"wrote {args.doc} and {args.results}", file=sys.stderr)


def merged(old: dict[str, Any], new: dict[str, Any], only: set[str]) -> dict[str, Any]:
    """``old`` with the figures ``new`` measured; the machine table says when the rerun was, and how loaded."""
    figures = {key: value for key, value in new.items() if key not in ("machine", "settings", "commands")}
    out = old | figures
    rerun = f"{new['machine']['date']}, load average (1 min) {new['machine']['load average (1 min) at start']} at start"
    label = f"({','.join(sorted(only))}) rerun"
    # the figures this rerun replaces, so that the notes can compare with the run before
    out["previous"] = {key: old[key] for key in figures if key in old} | {
        "machine": {key: value for key, value in old["machine"].items() if key == label}
    }
    out["machine"] = old["machine"] | {label: rerun}
    out["commands"] = [
        *old.get("commands", []),
        *(c for c in new.get("commands", []) if c not in old.get("commands", [])),
    ]
    return out


def write_report(results: dict[str, Any], doc: Path) -> None:
    """Write the report of ``results`` to ``doc`` and print its table."""
    table = rows(results)
    notes = NOTES_FILE.read_text() if NOTES_FILE.exists() else ""
    doc.write_text(report.render(results, table, notes))
    for row in table:
        met = "" if row.met is None else (" [met]" if row.met else " [MISSED]")
        ratio = "" if row.ratio is None else f" ({row.ratio:.2f}x {row.baseline})"
        print(f"({row.scenario}) {row.figure}: {row.value:.2f} {row.unit}{ratio}{met}", file=sys.stderr)


def _bcd(cluster: Cluster, settings: Settings, only: set[str], work: Path, results: dict[str, Any]) -> None:
    """Scenarios (b) and (d) on one API of one replica (d measures cortex-async beside each stack), (w) on an API
    with none, then (c)."""
    if only & {"b", "d", "w"}:
        with e2e.deployed(cluster, work, clients=settings.clients) as target:
            if "b" in only:
                print("(b) end-to-end overhead", file=sys.stderr)
                results["e2e"] = e2e.measure(
                    target, runs=settings.runs, sequential=settings.sequential,
                    clients=settings.clients, per_client=settings.per_client,
                )  # fmt: skip
            if "d" in only:
                print("(d) Celery, RQ, arq, each beside cortex-async", file=sys.stderr)
                results["diy"] = diy.measure(
                    work, runs=settings.runs, submits=settings.diy_submits, sequential_count=settings.sequential,
                    ours=e2e.Beside(target),
                )  # fmt: skip
            if "w" in only:
                print(f"(w) gateway CPU with {settings.waiters:,} idle waiters", file=sys.stderr)
                results["waiters"] = waiters.measure(
                    cluster, runs=settings.runs, waiters=settings.waiters, window=settings.waiter_window
                )
    if "c" in only:
        print("(c) dispatch throughput", file=sys.stderr)
        results["dispatch"] = dispatch.measure(
            cluster, work, runs=settings.runs, requests=settings.dispatch_requests,
            replicas=settings.replicas, concurrency=settings.max_concurrency,
        )  # fmt: skip


def run(settings: Settings, only: set[str], work: Path) -> dict[str, Any]:
    """Every scenario asked for; the raw results."""
    results: dict[str, Any] = {"machine": machine.describe(), "settings": dataclasses.asdict(settings)}
    commands = ["bench/run" + (" --quick" if settings.runs == 1 else "")]
    if "a" in only:
        print("(a) submit throughput", file=sys.stderr)
        cluster = Cluster(work / "cluster-a")
        commands.append(" ".join(cluster.up_command) + "   # + an API with min_replicas: 0")
        cluster.up()
        try:
            results["submit"] = submit.measure(
                cluster, work, runs=settings.runs, seconds=settings.wrk_seconds, warmup=settings.wrk_warmup
            )
        finally:
            cluster.down()
        first = results["submit"]["runs"][0]
        commands.append(first["cortex"]["command"])
        commands.append(
            "taskset -c 0 python -m uvicorn bench.bare_server:app --loop uvloop --http httptools --no-access-log"
        )
        commands.append(first["bare"]["command"])
    if only & {"b", "c", "d", "w"}:
        cluster = Cluster(work / "cluster-bcd")
        commands.append(" ".join(cluster.up_command) + "   # + APIs of the no-op server (bench/noop_server.py)")
        cluster.up()
        try:
            _bcd(cluster, settings, only, work, results)
            results["gateway_rss_after_bcd_mb"] = cluster.gateway_memory()["VmRSS"]
        finally:
            cluster.down()
    if "k" in only:
        print("(k) keep-alive: a server writing head and body apart, with and without TCP_QUICKACK", file=sys.stderr)
        results["keepalive"] = keepalive.measure(work, runs=settings.runs, count=settings.keepalive_count)
        commands.append("CORTEX_DEQUEUER_QUICKACK=0 cortex cluster up ...   # (k): the dequeuers without the remedy")
    if "f" in only:
        print("(f) the pipeline on SQLite, Redis and PostgreSQL", file=sys.stderr)
        results["backends"] = backends.measure(
            work, runs=settings.runs, sequential=settings.sequential, requests=settings.dispatch_requests,
            replicas=settings.replicas, concurrency=settings.max_concurrency,
        )  # fmt: skip
        commands.append(
            "cortex cluster up ... --queue URL --store URL   # redis://127.0.0.1:6379/12?prefix=..., "
            "postgresql://postgres@127.0.0.1:5432/test?schema=..."
        )
    if "z" in only:
        print("(z) wake from zero", file=sys.stderr)
        results["wake_from_zero"] = wake.measure_all(
            work, list(backends.available()), trials=5 if settings.runs > 1 else 2, tick=wake.TICK_S, slow=wake.SLOW_S
        )
        commands.append("python -m bench.wake   # (z) wake from zero, on each backend")
    if "d" in only:
        commands += [" ".join(stack.worker_argv).replace(sys.executable, "python") for stack in diy.stacks()]
    results["machine"]["load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    results["commands"] = commands
    return results
