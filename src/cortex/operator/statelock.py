"""One cluster per state directory: a lock the cluster process holds while it runs.

The lock is ``flock`` on ``<state>/cluster.lock``, so the kernel drops it when the process ends,
however it ends: a cluster killed with ``kill -9`` leaves nothing held. Its descriptor is not
inherited (Python opens files close-on-exec), so the gateway and replicas a killed cluster leaves
running do not keep it either. The file holds the holder's pid, for the messages.

Who only asks (``cortex cluster up`` before it starts one, ``cortex cluster down``) takes the lock
shared for an instant; the cluster, taking it exclusively, tries again for :data:`ACQUIRE_WAIT`
seconds, so such a look never makes a starting cluster fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cortex.errors import CortexError

#: the lock file, in the state directory
LOCK_FILE = "cluster.lock"
#: seconds a cluster keeps trying for a lock that is held (by a look, or by a cluster)
ACQUIRE_WAIT = 2.0
_RETRY = 0.05


class StateDirBusy(CortexError):
    """Another cluster runs, or is starting, on the state directory."""


@contextlib.asynccontextmanager
async def holding(state_dir: Path) -> AsyncIterator[None]:
    """Hold ``state_dir``'s lock for the duration; :class:`StateDirBusy` if a cluster holds it."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + ACQUIRE_WAIT
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                pid = _read_pid(fd)
                who = f" (pid {pid})" if pid is not None else ""
                raise StateDirBusy(
                    f"a cluster is already running on {state_dir}{who}: stop it with"
                    f" `cortex cluster down --state-dir {state_dir}`, or use another --state-dir"
                )
            await asyncio.sleep(_RETRY)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def holder(state_dir: Path) -> int | None:
    """The pid of the cluster holding ``state_dir``'s lock (0 if it wrote none yet), or None if it is free."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None  # closing the descriptor drops the shared lock
        return _read_pid(fd) or 0
    finally:
        os.close(fd)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None
