"""Processes of a benchmark: free ports, servers started and stopped, pids, pinning, memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers anything below 500."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.05)


@contextlib.contextmanager
def running(argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``, in the repository) for the duration of the block."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pids_with(*needles: str) -> list[int]:
    """Pids whose command line contains every one of ``needles`` (as whole arguments or substrings)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(int(entry.name))
    return sorted(found)


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (peak) of ``pid`` in MB (10^6 bytes), from /proc/<pid>/status."""
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) * 1024 / 1e6
    return figures


def cpus() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpu: int) -> bool:
    """Pin every thread of ``pid`` to ``cpu`` with taskset; False when that is not possible."""
    if shutil.which("taskset") is None or len(cpus()) < 2:
        return False
    done = subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, check=False)
    return done.returncode == 0


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c cpu`` when pinning is possible."""
    if cpu is None or shutil.which("taskset") is None or len(cpus()) < 2:
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]
