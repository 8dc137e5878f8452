"""Wake-ups between processes that share a state directory, so an idle worker does not poll.

Each waiting queue binds a Unix datagram socket named ``<api>.<pid>.<random>.sock`` in a folder
beside the database; an enqueue sends one byte to every socket of that API. A lost or late
datagram costs nothing but latency: waiters still look at the queue every ``fallback`` seconds
(lapsed leases wake nobody, and are found that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
from pathlib import Path

log = logging.getLogger(__name__)


class WakeListener:
    """One process's wake-up socket for one API."""

    def __init__(self, folder: Path, api: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{api}.{os.getpid()}.{secrets.token_hex(4)}.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        try:
            self._sock.bind(str(self.path))
        except OSError:
            self._sock.close()
            raise

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up; True if one came (all pending ones are consumed)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_recv(self._sock, 16)
        except TimeoutError:
            return False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._sock.recv(16):  # a burst of enqueues is one wake-up
                pass
        return True

    async def receive(self) -> bytes:
        """The next datagram sent to this socket."""
        return await asyncio.get_running_loop().sock_recv(self._sock, 65536)

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def wake(folder: Path, api: str) -> None:
    """Wake every process waiting for ``api`` (never blocks; stale sockets are removed)."""
    send(folder, api, b"!")


def send(folder: Path, name: str, data: bytes) -> None:
    """Send ``data`` to every socket of ``name`` in ``folder`` (never blocks; stale sockets are removed)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    prefix = f"{name}."
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for entry in entries:
            if not entry.name.startswith(prefix) or not entry.name.endswith(".sock"):
                continue
            try:
                sender.sendto(data, entry.path)
            except (ConnectionRefusedError, FileNotFoundError):
                # its process is gone without cleaning up (killed): nobody will ever read it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):  # full: it has a wake-up pending anyway
                    log.debug("wake-up to %s failed: %s", entry.path, exc)
