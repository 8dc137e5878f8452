"""What the figures were measured on: cores, CPU, Python, versions of the stacks, date."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
from pathlib import Path

PACKAGES = ("cortex-async", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "celery", "rq", "arq", "redis")


def describe() -> dict[str, str]:
    """Facts about this machine and its software, as strings."""
    facts = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
        "wrk": _first_line(["wrk", "-v"]),
        "redis-server": _first_line(["redis-server", "--version"]),
    }
    for package in PACKAGES:
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            facts[package] = "not installed"
    return facts


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"
