"""One cluster per state directory (issue 18, point 5): a second is refused, a killed one holds nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cortex.operator import statelock
from tests.cluster.conftest import ClusterFactory
from tests.e2e.conftest import free_port

_HOLD = """
import asyncio, sys
from pathlib import Path
from cortex.operator.statelock import holding

async def main() -> None:
    async with holding(Path(sys.argv[1])):
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _gone(pid: int, timeout: float = 30) -> None:
    """Wait until ``pid`` has exited and been reaped (a zombie still shows in /proc)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"process {pid} still there after {timeout}s"
        time.sleep(0.05)


async def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    assert statelock.holder(tmp_path) is None
    async with statelock.holding(tmp_path):
        assert statelock.holder(tmp_path) == os.getpid()
        with pytest.raises(statelock.StateDirBusy, match=rf"already running on {tmp_path} \(pid {os.getpid()}\)"):
            async with statelock.holding(tmp_path):
                pass
    assert statelock.holder(tmp_path) is None
    async with statelock.holding(tmp_path):  # released: taken again at once
        assert statelock.holder(tmp_path) == os.getpid()


async def test_a_look_never_makes_a_starting_cluster_fail(tmp_path: Path) -> None:
    looks = 0

    async def look() -> None:
        nonlocal looks
        for _ in range(200):
            statelock.holder(tmp_path)
            looks += 1
            await asyncio.sleep(0)

    async def take() -> int | None:
        async with statelock.holding(tmp_path):
            return statelock.holder(tmp_path)

    looking = asyncio.create_task(look())
    held = [await take() for _ in range(20)]
    await looking
    assert held == [os.getpid()] * 20 and looks == 200


def test_a_process_killed_with_the_lock_leaves_it_free(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert statelock.holder(tmp_path) == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert statelock.holder(tmp_path) is None


def test_a_second_cluster_is_refused_and_a_killed_one_is_replaced(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("--grace-period", "3")
    ports = ("--gateway-port", str(free_port()), "--operator-port", str(free_port()))
    # in the foreground, as a service manager would start it, on other ports: refused, not run beside
    second = cluster.cortex("cluster", "up", "--foreground", *ports, check=False, timeout=60)
    assert second.returncode == 1, second.stderr
    assert f"a cluster is already running on {cluster.state_dir}" in second.stderr
    assert "cortex cluster down" in second.stderr
    again = cluster.cortex("cluster", "up", *ports)  # in the background: told it runs, nothing started
    assert "a cluster is already running" in again.stderr
    assert httpx.get(f"{cluster.gateway}/healthz", timeout=10).text == "ok"

    pid = json.loads((cluster.state_dir / "cluster.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # its gateway and replicas live on, and must not keep the lock
    _gone(pid)
    assert statelock.holder(cluster.state_dir) is None
    ports = ("--gateway-port", str(cluster.gateway_port), "--operator-port", str(cluster.operator_port))
    restarted = cluster.cortex("cluster", "up", *ports, "--grace-period", "3")
    assert "cluster is up" in restarted.stderr
    assert statelock.holder(cluster.state_dir) == json.loads((cluster.state_dir / "cluster.json").read_text())["pid"]


def test_two_clusters_started_at_once_one_runs(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("--grace-period", "3")  # the state directory and CLI config of the test
    cluster.cortex("cluster", "down")
    starts = []
    for _ in range(2):
        ports = ("--gateway-port", str(free_port()), "--operator-port", str(free_port()))
        argv = [sys.executable, "-m", "cortex", "cluster", "up", "--foreground", *ports, "--grace-period", "3"]
        starts.append(
            subprocess.Popen(
                argv, env=cluster.env, cwd=cluster.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        refused = _first_to_exit(starts, timeout=60)
        _, stderr = refused.communicate()
        assert refused.returncode == 1 and f"a cluster is already running on {cluster.state_dir}" in stderr, stderr
        (running,) = [start for start in starts if start is not refused]
        assert running.poll() is None
        assert statelock.holder(cluster.state_dir) == running.pid
    finally:
        for start in starts:
            if start.poll() is None:
                start.send_signal(signal.SIGTERM)
            start.communicate(timeout=60)
    assert statelock.holder(cluster.state_dir) is None


def _first_to_exit(processes: list[subprocess.Popen[str]], *, timeout: float) -> subprocess.Popen[str]:
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                return process
        assert time.monotonic() < deadline, f"neither cluster exited within {timeout}s"
        time.sleep(0.05)


def test_a_cluster_still_starting_is_refused_and_can_be_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # a process holding the lock and not yet serving: a cluster between its start and its cluster.json
    starting = subprocess.Popen([sys.executable, "-c", _HOLD, str(state)], stdout=subprocess.PIPE, text=True)
    env = {**os.environ, "CORTEX_CLI_CONFIG_DIR": str(tmp_path / "cli")}
    try:
        assert starting.stdout is not None and starting.stdout.readline() == "held\n"
        ports = ["--gateway-port", str(free_port()), "--operator-port", str(free_port())]
        up = subprocess.run(
            [sys.executable, "-m", "cortex", "cluster", "up", "--state-dir", str(state), *ports],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert up.returncode == 1, up.stderr
        assert f"a cluster is starting on {state} (pid {starting.pid})" in up.stderr
        reaper = threading.Thread(target=starting.wait)  # reaped once stopped: `down` waits until it is gone
        reaper.start()
        down = subprocess.run(
            [sys.executable, "-m", "cortex", "cluster", "down", "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert down.returncode == 0, down.stderr
        reaper.join(timeout=30)
        assert starting.returncode == -signal.SIGTERM  # down stopped it
    finally:
        if starting.poll() is None:
            starting.kill()
            starting.wait()
        assert starting.stdout is not None
        starting.stdout.close()
    assert statelock.holder(state) is None
