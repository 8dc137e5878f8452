"""Process groups, short commands and supervision, with real processes."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from cortex.runtime.process import ProcessPlan, describe_exit, run_command, spawn, terminate, written
from cortex.runtime.stamp import being_written, parse
from cortex.runtime.supervisor import Supervised, backoff_delay
from tests.runtime.conftest import alive, wait_for

# a process that starts a child of its own and writes both pids
FAMILY = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(os.getpid(), child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("crashes", "cap", "delay"), [(1, 30, 1), (2, 30, 2), (3, 30, 4), (5, 30, 16), (6, 30, 30), (50, 30, 30), (4, 5, 5)]
)
def test_backoff_doubles_up_to_the_cap(crashes: int, cap: float, delay: float) -> None:
    assert backoff_delay(crashes, cap) == delay


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"


def _said(log: Path) -> str:
    """What a process wrote to its log, without the stamps."""
    return "".join(parse(line)[1] for line in log.read_text().splitlines(keepends=True)) if log.exists() else ""


async def _pids(log: Path) -> list[int]:
    await wait_for("the pids", lambda: _said(log).count(" ") == 1, 10)
    return [int(pid) for pid in _said(log).split()]


async def test_output_is_stamped_with_when_it_came_and_its_stamper_ends_with_the_group(tmp_path: Path) -> None:
    log = tmp_path / "talk.log"
    log.write_bytes(b"from before\n")
    before = time.time()
    script = "import time; print('one', flush=True); time.sleep(0.3); print('two')"
    process = await spawn(ProcessPlan("talk", (sys.executable, "-c", script), {}, tmp_path, log))
    assert await process.wait() == 0
    await written(log)
    assert not being_written(str(log))  # the pipe closed: the stamper wrote everything and ended
    first, *stamped_lines = log.read_text().splitlines()
    assert first == "from before"
    (one_at, one), (two_at, two) = [parse(line) for line in stamped_lines]
    assert (one, two) == ("one", "two")
    assert one_at is not None and two_at is not None and before - 1 <= one_at < two_at <= time.time() + 1


async def test_a_log_file_that_cannot_be_written_fails_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.log"
    folder.mkdir()
    with pytest.raises(OSError, match="cannot write its log file"):
        await spawn(ProcessPlan("x", (sys.executable, "-c", "print('lost')"), {}, tmp_path, folder))


async def test_terminate_ends_the_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    process = await spawn(ProcessPlan("family", (sys.executable, "-c", FAMILY), {}, tmp_path, log))
    parent, child = await _pids(log)
    assert parent == process.pid and alive(child)
    assert await terminate(process, 2.0) == -15  # the group got SIGTERM
    await wait_for("the child to go", lambda: not alive(child), 5)


async def test_run_command_bounds_time_and_reports(tmp_path: Path) -> None:
    assert await run_command(["true"], env={}, cwd=tmp_path, timeout=5) == (0, "")
    code, output = await run_command(
        [sys.executable, "-c", "print('nope'); raise SystemExit(2)"], env={}, cwd=tmp_path, timeout=5
    )
    assert (code, output) == (2, "nope")
    assert await run_command(["sleep", "30"], env={}, cwd=tmp_path, timeout=0.2) == (None, "timed out after 0.2s")
    code, output = await run_command(["/no/such/program"], env={}, cwd=tmp_path, timeout=5)
    assert code is None and "could not run /no/such/program" in output


async def test_supervised_restarts_and_stops_the_group(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    plan = ProcessPlan("family", (sys.executable, "-c", FAMILY), {}, tmp_path, log)
    supervised = Supervised(plan, label="container family", where="test", backoff_max=1)
    supervised.start()
    try:
        parent, child = await _pids(log)
        log.unlink()
        # the leader dies: what is left of its group goes too, and a new one starts
        terminated = await asyncio.create_subprocess_exec("kill", "-9", str(parent))
        await terminated.wait()
        await wait_for("the restart", lambda: supervised.restarts == 1 and supervised.pid is not None, 10)
        await wait_for("the old child to be gone", lambda: not alive(child), 5)  # SIGKILL lands asynchronously
        assert supervised.failure is None
        new_parent, new_child = await _pids(log)
        assert new_parent == supervised.pid != parent
    finally:
        await supervised.stop(2.0)
    await wait_for("the group to be gone", lambda: not alive(new_parent) and not alive(new_child), 5)
