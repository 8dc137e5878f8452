"""A TCP proxy on loopback that cuts or stalls the next exchange on demand: faults at exact points.

Every connection is passed through until the proxy is armed; then the next chunk a client sends
meets the fault:

- ``before``: the chunk is dropped and the connection closed (the server never sees the command);
- ``after``: the chunk reaches the server, its answer is dropped and the connection closed (the
  command ran; the client never learns it);
- ``stall``: the chunk is held (the server seems frozen) until :meth:`Cutter.thaw`; then it is
  delivered (the command runs late, after its client gave up) and the connection closed.

The fault is one-shot: later chunks and connections pass again.

A partition is :meth:`Cutter.blackhole` then :meth:`Cutter.heal`: meanwhile nothing passes either
way, on the connections open or opened (they are accepted, as a peer whose SYN-ACKs are lost to a
dropped link would seem to a client with its connect timeout); healing closes the connections the
cut went through (their bytes are lost) and lets new ones pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


class Cutter:
    """The proxy; :attr:`port` is where clients connect."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._armed: str | None = None
        self._thawed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        #: the faults that happened, in order
        self.happened: list[str] = []
        #: chunks clients sent (each a round trip, for a client that waits for each answer)
        self.sent = 0
        #: runs of chunks a client sent between two answers of the server: its round trips, however
        #: many chunks a large message takes
        self.turns = 0
        #: connections clients opened
        self.connections = 0
        #: set once a stalled chunk has been delivered (and the server had time to run it)
        self.delivered = asyncio.Event()
        #: whether a partition is on (:meth:`blackhole`)
        self.cut = False
        self._open: set[asyncio.StreamWriter] = set()
        #: the client connections the server answered since they last sent
        self._answered: set[asyncio.StreamWriter] = set()
        self._victims: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def arm(self, fault: str) -> None:
        """Make the next client chunk meet ``fault`` (``before``, ``after`` or ``stall``)."""
        assert fault in ("before", "after", "stall")
        self._armed = fault
        self._thawed.clear()

    def thaw(self) -> None:
        """Deliver a stalled chunk now."""
        self._thawed.set()

    def blackhole(self) -> None:
        """Pass nothing either way, on every connection, until :meth:`heal`."""
        self.cut = True
        self._victims |= self._open

    def heal(self) -> None:
        """Pass again: close the connections the cut went through, let new ones pass."""
        self.cut = False
        for writer in self._victims:
            writer.close()
        self._victims.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.cut:
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        reply_fault = asyncio.Event()
        self._open |= {writer, up_writer}
        self._answered.add(writer)
        self._spawn(self._downstream(up_reader, writer, reply_fault))
        try:
            while chunk := await reader.read(65536):
                if self.cut or writer in self._victims:
                    continue  # lost in the partition
                self._count(writer)
                fault, self._armed = self._armed, None
                if fault == "before":
                    self.happened.append("before")
                    break
                if fault == "stall":
                    self.happened.append("stall")
                    await self._thawed.wait()
                    up_writer.write(chunk)
                    await up_writer.drain()
                    await asyncio.sleep(0.2)  # let the server run it before the connection goes
                    self.delivered.set()
                    break
                if fault == "after":
                    self.happened.append("after")
                    reply_fault.set()
                up_writer.write(chunk)
                await up_writer.drain()
                if fault == "after":
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if reply_fault.is_set():
                await asyncio.sleep(0.2)  # the server answers into the void
            self._answered.discard(writer)
            for w in (writer, up_writer):
                w.close()
                self._open.discard(w)

    def _count(self, writer: asyncio.StreamWriter) -> None:
        """Count a chunk the client of ``writer`` sent, and the round trip it starts if the server had answered."""
        self.sent += 1
        if writer in self._answered:
            self._answered.discard(writer)
            self.turns += 1

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection into the partition: it never reaches the server, and ends when the cut heals."""
        self._victims.add(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.close()

    async def _downstream(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, dropped: asyncio.Event) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while chunk := await up.read(65536):
                if dropped.is_set() or self.cut or writer in self._victims:
                    continue
                self._answered.add(writer)
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


@contextlib.asynccontextmanager
async def cutter(host: str, port: int) -> AsyncIterator[Cutter]:
    """A started :class:`Cutter` in front of ``host:port``."""
    proxy = Cutter(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
