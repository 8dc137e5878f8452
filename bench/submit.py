"""Scenario (a): submit throughput of the gateway beside a bare Starlette server, with wrk.

The API has no replica (``min_replicas: 0``, and the autoscaler does not tick), so only the
submit path is measured: body read, record and queue row stored durably (group commit), answer.
The server under test runs on one core and wrk on the other; the two servers alternate, so
both see the same machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench import wrk
from bench.cluster import Cluster, api_spec
from bench.memory import PeakRss
from bench.procs import free_port, pin, pinned, running, wait_http

API = "bench-submit"
SERVER_CPU, CLIENT_CPU = 0, 1


def measure(cluster: Cluster, work: Path, *, runs: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Alternate wrk runs against the gateway and the bare server; raw figures per run."""
    cluster.deploy(api_spec(API, replicas=0))
    gateway = cluster.gateway_pids()[0]
    pinned_ok = pin(gateway, SERVER_CPU)
    idle = cluster.gateway_memory()["VmRSS"]
    script = wrk.write_script(work)
    port = free_port()
    bare_argv = [
        sys.executable, "-m", "uvicorn", "bench.bare_server:app", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    targets = {"cortex": f"{cluster.gateway_url}/{API}", "bare": f"http://127.0.0.1:{port}/api"}
    rows: list[dict[str, Any]] = []
    peak = PeakRss(gateway)
    with running(pinned(bare_argv, SERVER_CPU), work / "bare-server.log"):
        wait_http(f"http://127.0.0.1:{port}/")
        for url in targets.values():
            wrk.run(url, script, seconds=warmup, cpu=CLIENT_CPU)
        with peak.watching():
            for index in range(runs):
                order = ["bare", "cortex"] if index % 2 == 0 else ["cortex", "bare"]
                row: dict[str, Any] = {}
                for name in order:
                    result = wrk.run(targets[name], script, seconds=seconds, cpu=CLIENT_CPU)
                    row[name] = {
                        "requests_per_s": result.requests_per_s,
                        "p50_ms": result.p50_ms,
                        "p99_ms": result.p99_ms,
                        "errors": result.errors,
                        "requests": result.requests,
                        "command": result.command,
                    }
                row["ratio"] = row["cortex"]["requests_per_s"] / row["bare"]["requests_per_s"]
                rows.append(row)
                print(
                    f"  (a) run {index + 1}: cortex {row['cortex']['requests_per_s']:.0f}/s,"
                    f" bare {row['bare']['requests_per_s']:.0f}/s, ratio {row['ratio']:.2f}",
                    file=sys.stderr,
                )
    after = cluster.gateway_memory()["VmRSS"]
    return {
        "runs": rows,
        "pinned": pinned_ok,
        "gateway_rss_mb": {"idle": idle, "under_load_peak": peak.peak_mb, "after_load": after},
        "stored": cluster.count(API),
    }
