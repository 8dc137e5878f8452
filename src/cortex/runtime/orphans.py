"""The processes a local cluster runs, written down so that a cluster restarted after a crash stops those left over.

Every process of a local cluster (its gateway, each replica's dequeuer and containers) leads a
session of its own, so a cluster killed with SIGKILL leaves them running and unsupervised: the old
gateway keeps its port, the old dequeuers keep leasing beside the new replicas, and nothing will
ever stop them. So each one is recorded while it runs, as ``<pid dir>/<pid>.json`` holding its name
and its start time (which tells it apart from a later process given the same pid), and a cluster
starting on the state directory first stops whatever is still running from that list, the way
``cortex cluster down`` would: the gateway and the dequeuers first (SIGTERM: the gateway answers
what it accepted, the dequeuers finish what they hold), then the containers.

Start times are read from ``/proc``. Where there is none, a process cannot be told apart from a
stranger that got its pid, so leftovers are reported, not signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PROC = Path("/proc")
#: stopped before the others: they hand over what they hold (accepted requests, leases) by draining
DRAIN_FIRST = frozenset({"gateway", "dequeuer"})
#: how often a stopping process is looked at
POLL = 0.05


def identity(pid: int) -> str | None:
    """``<boot id>:<start time>`` of a running ``pid``: None if it is gone (or a zombie) or there is no ``/proc``."""
    try:
        boot = (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    if fields[0] == "Z":
        return None
    return f"{boot}:{fields[19]}"  # field 22 of proc(5): the start time in clock ticks after boot


def record(pid_dir: Path, name: str, pid: int) -> None:
    """Write down that ``pid`` (the process ``name``, leading its own group) runs for the cluster."""
    pid_dir.mkdir(parents=True, exist_ok=True)
    tmp = pid_dir / f"{pid}.tmp"
    tmp.write_text(json.dumps({"name": name, "pid": pid, "identity": identity(pid)}))
    tmp.replace(pid_dir / f"{pid}.json")


def forget(pid_dir: Path, pid: int) -> None:
    """Strike ``pid`` off: its group is gone."""
    with contextlib.suppress(FileNotFoundError):
        (pid_dir / f"{pid}.json").unlink()


def leftovers(pid_dir: Path) -> list[tuple[str, int, str | None]]:
    """``(name, pid, identity)`` of each recorded process; records of processes gone are removed."""
    found = []
    for path in sorted(pid_dir.glob("*.json")) if pid_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            name, pid, known = str(data["name"]), int(data["pid"]), data["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # half-written by a killed cluster: it names nothing reliable
            continue
        if known is not None and identity(pid) != known:
            path.unlink(missing_ok=True)
            continue
        found.append((name, pid, known))
    return found


async def stop_leftovers(pid_dir: Path, grace: float, *, drain_extra: float = 5.0) -> int:
    """Stop every recorded process still running (see the module's docstring); return how many were stopped.

    Args:
        pid_dir: Where the processes were recorded.
        grace: Seconds each process gets between SIGTERM and SIGKILL.
        drain_extra: Added to ``grace`` for the gateway and dequeuers, as on a replica's stop.
    """
    found = leftovers(pid_dir)
    unknown = [pid for _, pid, known in found if known is None]
    if unknown:
        log.warning("processes %s may be left from a cluster that was killed; stop them by hand if so", unknown)
    found = [(name, pid, known) for name, pid, known in found if known is not None]
    if not found:
        return 0
    log.warning(
        "stopping %d process(es) left running by a cluster that was killed: %s",
        len(found),
        ", ".join(f"{name} {pid}" for name, pid, _ in found),
    )
    first = [(pid, known) for name, pid, known in found if name in DRAIN_FIRST]
    rest = [(pid, known) for name, pid, known in found if name not in DRAIN_FIRST]
    for group, seconds in ((first, grace + drain_extra), (rest, grace)):
        await _stop(group, seconds)
        for pid, _ in group:
            forget(pid_dir, pid)
    return len(found)


async def _stop(processes: Sequence[tuple[int, str | None]], grace: float) -> None:
    """SIGTERM each process group, wait up to ``grace`` for the leaders to exit, then SIGKILL what is left.

    As :func:`cortex.runtime.process.terminate` does, a group is killed even when its leader exited:
    children it left behind go too.
    """
    for pid, _ in processes:
        _signal(pid, signal.SIGTERM)
    await _wait_gone(processes, grace)
    for pid, _ in processes:
        _signal(pid, signal.SIGKILL)
    if running := await _wait_gone(processes, 5.0):
        log.error("processes %s left by a killed cluster did not stop", running)


def _signal(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _wait_gone(processes: Sequence[tuple[int, str | None]], seconds: float) -> list[int]:
    """Wait until no leader of ``processes`` runs, at most ``seconds``; return those still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        running = [pid for pid, known in processes if identity(pid) == known]
        if not running or loop.time() >= deadline:
            return running
        await asyncio.sleep(POLL)
