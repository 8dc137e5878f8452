"""Recording the processes a cluster runs, and stopping those a killed cluster left behind, with real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cortex.cli.main import cli
from cortex.runtime import orphans
from cortex.runtime.local import PID_DIR
from cortex.runtime.process import ProcessPlan
from cortex.runtime.supervisor import Supervised
from tests.runtime.conftest import alive, wait_for

# a process that starts a child of its own, writes both pids, and drains for a while on SIGTERM
FAMILY = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(float(sys.argv[1])), sys.exit(0)))
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def family(tmp_path: Path, name: str, drain: float, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """Start a process group as the cluster does (a session of its own), as if the cluster that started it died."""
    out = tmp_path / f"{name}.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", FAMILY, str(drain)], stdout=sink, start_new_session=True, stdin=subprocess.DEVNULL
        )
    procs.append(proc)
    await wait_for("the pids", lambda: out.read_text().count(" ") == 1, 10)
    leader, child = (int(pid) for pid in out.read_text().split())
    return leader, child


async def test_leftovers_are_stopped_gateway_and_dequeuers_first(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pids = tmp_path / "pids"
    dequeuer, dequeuer_child = await family(tmp_path, "dequeuer", 0.5, started)
    container, container_child = await family(tmp_path, "api", 0.0, started)
    orphans.record(pids, "dequeuer", dequeuer)
    orphans.record(pids, "api", container)
    assert sorted((name, pid) for name, pid, _ in orphans.leftovers(pids)) == [
        ("api", container),
        ("dequeuer", dequeuer),
    ]

    stopping = asyncio.create_task(orphans.stop_leftovers(pids, grace=5.0))
    await asyncio.sleep(0.3)  # the dequeuer drains; the container must still serve it meanwhile
    assert alive(container) and not stopping.done()
    assert await stopping == 2
    assert not any(alive(pid) for pid in (dequeuer, dequeuer_child, container, container_child))
    assert list(pids.iterdir()) == []


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    leader, child = await family(tmp_path, "api", 60.0, started)
    orphans.record(tmp_path, "api", leader)
    assert await orphans.stop_leftovers(tmp_path, grace=0.3) == 1
    assert not alive(leader) and not alive(child)


async def test_records_of_processes_gone_or_replaced_are_dropped_without_a_signal(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    leader, _ = await family(tmp_path, "api", 0.0, started)
    orphans.record(tmp_path, "api", leader)
    record = tmp_path / f"{leader}.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "identity": data["identity"] + "0"}))  # another process, same pid
    (tmp_path / "12345678.json").write_text(json.dumps({"name": "api", "pid": 12345678, "identity": "x"}))
    (tmp_path / "1.json").write_text("{")  # cut short by a crash
    assert orphans.leftovers(tmp_path) == []
    assert await orphans.stop_leftovers(tmp_path, grace=0.3) == 0
    assert alive(leader) and list(tmp_path.glob("*.json")) == []


async def test_supervised_processes_are_recorded_while_they_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    plan = ProcessPlan(
        "api", (sys.executable, "-c", "import time; time.sleep(60)"), {}, tmp_path, tmp_path / "log", pids
    )
    supervised = Supervised(plan, label="container api", where="test", backoff_max=1)
    supervised.start()
    try:
        await wait_for("the process", lambda: supervised.pid is not None, 10)
        first = supervised.pid
        assert [pid for _, pid, _ in orphans.leftovers(pids)] == [first]
        assert first is not None
        kill = await asyncio.create_subprocess_exec("kill", "-9", str(first))
        await kill.wait()
        await wait_for("the restart", lambda: supervised.pid not in (None, first), 10)
        assert [pid for _, pid, _ in orphans.leftovers(pids)] == [supervised.pid]
    finally:
        await supervised.stop(2.0)
    assert orphans.leftovers(pids) == []


async def test_cluster_down_stops_what_a_killed_cluster_left(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "state"
    pids = state / PID_DIR
    leader, child = await family(tmp_path, "dequeuer", 0.1, started)
    orphans.record(pids, "dequeuer", leader)
    # `down` runs in a thread: its own event loop must not be this test's
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["cluster", "down", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert "stopped 1 processes left running by a cluster that was killed" in " ".join(result.output.split())
    await wait_for("the leftover and its child to stop", lambda: not alive(leader) and not alive(child), 10)
    again = await asyncio.to_thread(CliRunner().invoke, cli, ["cluster", "down", "--state-dir", str(state)])
    assert "no cluster is running" in again.output
