"""Host processes of the local runtime: each in its own session, so its whole group can be signalled.

A container may start children of its own (a shell script, a server with worker processes); on
Kubernetes they all die with the container. Here every process is started as the leader of a new
session and process group, and stopping it signals the group, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cortex.runtime import stamp

log = logging.getLogger(__name__)

#: how much of a command's output is kept to explain a failure
OUTPUT_EXCERPT = 300


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessPlan:
    """What to run for one container (or a dequeuer), and where its output goes.

    Attributes:
        name: The container's name, or ``"dequeuer"``; names the log file and log lines.
        argv: The program and its arguments, already expanded; run without a shell.
        env: The whole environment of the process.
        cwd: The working directory.
        log_path: The file stdout and stderr are appended to.
        pid_dir: Where its pid is recorded while it runs, for a restarted cluster to find it
            (:mod:`cortex.runtime.orphans`); None: not recorded.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    pid_dir: Path | None = None


async def spawn(plan: ProcessPlan) -> asyncio.subprocess.Process:
    """Start ``plan`` as the leader of a new process group, its output stamped and appended to its log file.

    Output goes through a pipe to a stamper (:mod:`cortex.runtime.stamp`), which records when each
    line came, for ``cortex logs`` to merge replicas by time; it ends once the whole group is gone.

    Raises:
        OSError: The program could not be started (not found, not executable, no such cwd), or
            its log file cannot be written.
    """
    plan.log_path.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    try:
        stamper = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", stamp.__file__, str(plan.log_path),
            stdin=read_end, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        # it has forked: the stamper proper holds the read end from now on
        if await stamper.wait() != 0:  # no one would read what the process writes
            raise OSError(errno.EIO, f"cannot write its log file {plan.log_path}")
        return await asyncio.create_subprocess_exec(
            *plan.argv,
            env=dict(plan.env),
            cwd=plan.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    finally:  # the child keeps its own descriptor; without one (it did not start) the stamper ends
        os.close(read_end)
        os.close(write_end)


def signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    """Send ``signum`` to the process group ``process`` leads; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def terminate(process: asyncio.subprocess.Process, grace: float, *, name: str = "") -> int:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; return the leader's exit code.

    Whatever is left of the group once the leader has exited is killed too, as Kubernetes does
    with a container whose main process ended.
    """
    if process.returncode is None:
        signal_group(process, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            log.warning(
                "%s (pid %d) still running %gs after SIGTERM; killing it", name or "process", process.pid, grace
            )
    signal_group(process, signal.SIGKILL)
    return await process.wait()


async def written(path: Path, timeout: float = 2.0) -> None:
    """Wait until the stamper of a log file has written all it received (at most ``timeout`` seconds).

    A process's group gone, its stamper still has to append what was in the pipe; a process
    escaped from its group and holding the pipe could keep it open for ever, hence the bound.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while await asyncio.to_thread(stamp.being_written, str(path)):
                await asyncio.sleep(0.02)


def last_lines(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log file, joined by `` | ``, at most :data:`OUTPUT_EXCERPT` characters.

    What a crashed process said last is most often why it crashed; empty if there is no such file.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4 * OUTPUT_EXCERPT))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    unstamped = (stamp.parse(line)[1] for line in tail.splitlines())
    kept = [line.strip() for line in unstamped if line.strip()][-lines:]
    return " | ".join(kept)[-OUTPUT_EXCERPT:]


def describe_exit(code: int) -> str:
    """An exit status in words: ``"exited with code 3"`` or ``"was killed by SIGKILL"``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def run_command(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> tuple[int | None, str]:
    """Run a short command (an exec probe or hook) to completion, bounded by ``timeout``.

    Never raises, except when cancelled; the command's process group is killed on timeout and on
    cancellation.

    Returns:
        ``(exit code, output excerpt)``; the code is None when the command could not start or
        timed out, and the excerpt then says why.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return None, f"could not run {argv[0]}: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        return None, f"timed out after {timeout:g}s"
    finally:
        signal_group(process, signal.SIGKILL)  # on timeout or cancellation, and any leftover children
        await process.wait()
    text = output[-OUTPUT_EXCERPT:].decode("utf-8", errors="replace").strip()
    return process.returncode, text
