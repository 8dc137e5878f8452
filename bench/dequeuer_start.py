"""A replica's dequeuer start: from spawning ``python -m cortex.dequeuer`` to its first dispatch.

What is left of a wake from zero once the autoscaler decides at once (``bench/wake.py``) is the
dequeuer's own start. This times it alone, without a cluster: a user server already listening
(in this process, stdlib only), an API in the catalog and one request queued; then each run
spawns the dequeuer as the local runtime does and waits for the request's ``POST /``. Per backend
(default all three, on the test servers of ``bench/backends.py``), the median and max of:

- ``imports_s``: ``python -c 'import cortex.dequeuer.__main__'`` (the interpreter and the imports);
- ``first_take_s``: spawn → the first request dispatched (imports, the backend's driver and
  connections, the catalog read, the probe's first pass, the take, the forward);
- ``*_cpu_s``: the CPU time (user + system) of those processes, to their exit (the dequeuer is
  stopped as soon as it dispatched): the machine is shared, and CPU time depends less on how busy
  it is than the wall clock does.

``python -m bench.dequeuer_start [--runs N] [--backend sqlite|redis|postgres]...`` prints one line
per backend and writes them into ``bench/results.json`` under ``dequeuer_start`` (``--label`` names
the entry, e.g. ``before``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvloop

from bench.backends import POSTGRES, REDIS, _namespace
from cortex.backends import BackendUrls, open_backends
from cortex.requests import NewRequest
from cortex.spec import ApiSpec

RESULTS = Path(__file__).resolve().parent / "results.json"
BACKENDS: dict[str, str | None] = {"sqlite": None, "redis": REDIS, "postgres": POSTGRES}


class _Dispatches:
    """The user server's side: when each ``POST /`` arrived."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.at = 0.0


def _server(dispatches: _Dispatches) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            dispatches.at = time.perf_counter()
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            dispatches.arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def _prepare(urls: BackendUrls, api: str, *, deploy: bool) -> None:
    """Deploy ``api`` (the first time) and queue one request for it."""
    backends = await open_backends(urls)
    try:
        if deploy:
            container = {"name": "api", "command": ["true"]}  # never run: the harness serves the API itself
            spec = ApiSpec.from_dict({"name": api, "kind": "AsyncAPI", "pod": {"containers": [container]}})
            await backends.catalog.put_api(api, spec.to_dict(), spec.spec_id(), now=time.time())
        now = time.time()
        request = NewRequest(id=uuid.uuid4().hex, api=api, created_at=now, expires_at=now + 3600, headers=())
        await backends.plane.submit(request)
    finally:
        await backends.aclose()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def imports(runs: int) -> tuple[list[float], list[float]]:
    """Seconds (wall, CPU) to start the interpreter and import the dequeuer's entry, ``runs`` times."""
    times, cpu = [], []
    for _ in range(runs):
        before = _children_cpu()
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import cortex.dequeuer.__main__"], check=True)
        times.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - before)
    return times, cpu


def first_takes(urls: BackendUrls, state_dir: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds (wall, CPU) from spawning a dequeuer to its first dispatch, ``runs`` times (a fresh process each)."""
    dispatches = _Dispatches()
    server = _server(dispatches)
    api = "startfast"
    times, cpu = [], []
    try:
        for index in range(runs):
            uvloop.run(_prepare(urls, api, deploy=index == 0))
            dispatches.arrived.clear()
            argv = [sys.executable, "-m", "cortex.dequeuer", "--api", api, "--user-port", str(server.server_port)]
            argv += ["--state-dir", str(state_dir), "--queue", urls.queue, "--store", urls.store, "--blobs", urls.blobs]
            env = {**os.environ, "CORTEX_LOG_LEVEL": "WARNING"}
            before = _children_cpu()
            started = time.perf_counter()
            process = subprocess.Popen(argv, env=env)
            try:
                if not dispatches.arrived.wait(60):
                    raise TimeoutError("the dequeuer dispatched nothing within 60 s")
                times.append(dispatches.at - started)
            finally:
                process.terminate()
                process.wait(30)
            cpu.append(_children_cpu() - before)
    finally:
        server.shutdown()
    return times, cpu


def measure(backend: str, runs: int) -> dict[str, Any]:
    """The figures of one backend."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cortex-start-") as tmp, _namespace(backend, BACKENDS[backend]) as url:
        state_dir = Path(tmp)
        urls = BackendUrls.resolve(state_dir, queue=url, store=url)
        takes, takes_cpu = first_takes(urls, state_dir, runs)
    loaded, loaded_cpu = imports(runs)
    series = {"imports_s": loaded, "imports_cpu_s": loaded_cpu, "first_take_s": takes, "first_take_cpu_s": takes_cpu}
    return {
        "runs": runs,
        "load_average_1min_at_start": round(load, 2),
        **{
            f"{key}_{stat}": round(fn(values), 4)
            for key, values in series.items()
            for stat, fn in (("p50", statistics.median), ("max", max))
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dequeuer_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--backend", action="append", choices=tuple(BACKENDS))
    parser.add_argument("--label", default="", help="a suffix for the entries' names, e.g. 'before'")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--dry", action="store_true", help="print, do not write the results file")
    args = parser.parse_args(argv)
    figures = {}
    for backend in args.backend or list(BACKENDS):
        row = measure(backend, args.runs)
        label = f"{backend} ({args.label})" if args.label else backend
        figures[label] = row
        print(
            f"{label}: imports {row['imports_s_p50'] * 1000:.0f} / {row['imports_s_max'] * 1000:.0f} ms,"
            f" spawn to first dispatch {row['first_take_s_p50'] * 1000:.0f} / {row['first_take_s_max'] * 1000:.0f} ms;"
            f" CPU: imports {row['imports_cpu_s_p50'] * 1000:.0f} ms, dequeuer to its exit"
            f" {row['first_take_cpu_s_p50'] * 1000:.0f} ms"
            f" (p50 / max of {row['runs']}, load {row['load_average_1min_at_start']:.1f})"
        )
    if not args.dry:
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        results["dequeuer_start"] = {**results.get("dequeuer_start", {}), **figures}
        args.results.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()


def section(results: dict[str, Any]) -> list[str]:
    """The dequeuer-start rows of ``docs/benchmarks.md`` (nothing when the results hold none)."""
    start = results.get("dequeuer_start")
    if not start:
        return []
    lines = [
        "## A replica's dequeuer start",
        "",
        "From spawning `python -m cortex.dequeuer` (as the local runtime does) to its first dispatch, with a user",
        "server already listening and one request queued, and its interpreter and imports alone;",
        "`python -m bench.dequeuer_start`. Wall clock p50 / max, and the processes' CPU time (p50), in ms.",
        "",
        "| run | runs | load | imports | spawn to first dispatch | CPU: imports | CPU: dequeuer, to its exit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in start.items():
        lines.append(
            f"| {label} | {row['runs']} | {row['load_average_1min_at_start']:.1f}"
            f" | {_ms(row, 'imports_s')} | {_ms(row, 'first_take_s')}"
            f" | {row['imports_cpu_s_p50'] * 1000:.0f} | {row['first_take_cpu_s_p50'] * 1000:.0f} |"
        )
    lines += [
        "",
        "The machine is shared (2 cores) and the wall clock follows its load; the CPU time much less so.",
        "What is left is mostly imports (about 0.35 s of CPU): aiohttp (the forward, the probes and the",
        "admin port; about 0.15 s, a third of it the two TLS contexts it builds on import), the API spec's",
        "pydantic models (about 0.1 s), asyncio. Not imported any more: PyYAML. Not imported by a dequeuer",
        "at all (`tests/dequeuer/test_entry.py`): the CLI, the client, the gateway, the runtimes, and the",
        "drivers of the backends not in use. A backend already at the running version is checked with one",
        "read: no write lock on SQLite, no schema lock and DDL on PostgreSQL (an open of the three roles:",
        "21 to 30 ms before, 8 to 11 ms after, in a warm process).",
    ]
    return [*lines, ""]


def _ms(row: dict[str, Any], key: str) -> str:
    return f"{row[f'{key}_p50'] * 1000:.0f} / {row[f'{key}_max'] * 1000:.0f}"
