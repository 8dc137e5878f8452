"""Log lines of several sources merged in time order, and the local runtime's log files read that way.

Each process of a replica appends its stdout and stderr to ``<root>/<replica-id>/<name>.log``,
each line stamped with the time it was received (:mod:`cortex.runtime.stamp`); lines come out
prefixed ``[<replica-id> <name>]``, without the stamp, all files merged by time (:func:`merge`),
and ``tail`` counts lines overall, as Cortex's ``cortex logs`` did. Files are read in a thread, so
a large log never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from cortex.runtime.stamp import parse

#: how often a followed log is looked at again
POLL_INTERVAL = 0.2
_BLOCK = 64 * 1024
_MAX_READ = 1024 * 1024


class Line(NamedTuple):
    """One log line and when it was written (unix seconds), for :func:`merge`."""

    time: float
    text: str


def merge(sources: Iterable[Iterable[Line]], tail: int | None = None) -> list[Line]:
    """The lines of every source in time order, then the last ``tail`` of them (all for None).

    Each source is in time order already (one file, one container's log); lines written at the
    same time keep the order of their sources, and their order within one.
    """
    merged = heapq.merge(*sources, key=lambda line: line.time)
    if tail is None:
        return list(merged)
    return list(deque(merged, maxlen=tail)) if tail > 0 else []


def timed(lines: Iterable[str], prefix: str, start: float = 0.0) -> list[Line]:
    """Stamped lines as :class:`Line` s, stamps taken off and ``prefix`` put on.

    A line without a stamp (written by something else, or the rest of a line cut by a rotation)
    takes the time of the line before it, ``start`` for the first: a source stays in its order.
    """
    timed: list[Line] = []
    for line in lines:
        when, text = parse(line)
        start = start if when is None else when
        timed.append(Line(start, prefix + text))
    return timed


def tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last ``lines`` lines of ``path`` start (0 if it has fewer)."""
    with path.open("rb") as file:
        size = file.seek(0, 2)
        if lines <= 0 or size == 0:
            return size
        file.seek(size - 1)
        # the newline ending the last line does not start another line
        pos = size - 1 if file.read(1) == b"\n" else size
        found = 0
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            file.seek(pos)
            block = file.read(step)
            end = len(block)
            while (end := block.rfind(b"\n", 0, end)) >= 0:
                found += 1
                if found == lines:
                    return pos + end + 1
        return 0


def _read(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as file:
            if file.seek(0, 2) < offset:  # truncated: start over
                offset = 0
            file.seek(offset)
            return file.read(_MAX_READ)
    except FileNotFoundError:
        return b""


def _log_files(root: Path, replica: str | None = None) -> list[Path]:
    return sorted(root.glob("*/*.log" if replica is None else f"{replica}/*.log"))


class _File:
    """One log file being read: where reading got to, a line begun but not yet ended, the last time seen."""

    def __init__(self, path: Path, offset: int, *, own: bool = False) -> None:
        self.path = path
        self.offset = offset
        self.partial = b""
        self.time = 0.0
        # a replica's process is named by its folder and file; a cluster process (the gateway) by its file
        self.prefix = f"[{path.stem}] " if own else f"[{path.parent.name} {path.stem}] "

    async def read_lines(self, *, final: bool) -> list[Line]:
        """The complete lines appended since the last read (with ``final``, an unended last line too)."""
        texts: list[str] = []
        while chunk := await asyncio.to_thread(_read, self.path, self.offset):
            self.offset += len(chunk)
            *complete, self.partial = (self.partial + chunk).split(b"\n")
            texts.extend(_text(line) for line in complete)
            if len(chunk) < _MAX_READ:
                break
        if final and self.partial:
            texts.append(_text(self.partial))
            self.partial = b""
        lines = timed(texts, self.prefix, self.time)
        if lines:
            self.time = lines[-1].time
        return lines


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def read_logs(
    root: Path,
    *,
    follow: bool,
    tail: int | None,
    also: Sequence[Path] = (),
    mentioning: str | None = None,
    replica: str | None = None,
) -> AsyncGenerator[str, None]:
    """Lines of every log file under ``root``, in the order they were written.

    Args:
        root: The folder of one API's logs (``<state>/logs/<api>``).
        follow: After the existing lines, keep yielding appended lines and the lines of new files,
            until the consumer stops iterating (each look's new lines merged by time).
        tail: At most this many last lines, of all files together (None: all of them).
        also: Log files of cluster processes (the gateway's) read first, if they exist, as ``[<name>]``.
        mentioning: Only the lines that contain this text (one request's lines, by its id).
        replica: Only the files of this replica (its folder under ``root``).

    Yields:
        ``"[<replica-id> <name>] <line>"``, without the line ending.
    """
    return only_mentioning(_read_logs(root, follow=follow, tail=tail, also=also, replica=replica), mentioning)


async def only_mentioning(lines: AsyncGenerator[str, None], text: str | None) -> AsyncGenerator[str, None]:
    """The lines of ``lines`` that contain ``text`` (all of them for None); closes ``lines`` when done."""
    try:
        async for line in lines:
            if text is None or text in line:
                yield line
    finally:
        await lines.aclose()


async def _read_logs(
    root: Path, *, follow: bool, tail: int | None, also: Sequence[Path], replica: str | None
) -> AsyncGenerator[str, None]:
    files: dict[Path, _File] = {}
    sources: list[list[Line]] = []
    for path in [p for p in also if p.is_file()] + await asyncio.to_thread(_log_files, root, replica):
        # the last ``tail`` lines overall are among the last ``tail`` of each file
        offset = 0 if tail is None else await asyncio.to_thread(tail_offset, path, tail)
        files[path] = _File(path, offset, own=path in also)
        sources.append(await files[path].read_lines(final=not follow))
    for line in merge(sources, tail):
        yield line.text
    while follow:
        await asyncio.sleep(POLL_INTERVAL)
        sources = []
        for path in await asyncio.to_thread(_log_files, root, replica):
            file = files.setdefault(path, _File(path, 0))  # a new replica's file: from its start
            sources.append(await file.read_lines(final=False))
        for line in merge(sources):
            yield line.text
