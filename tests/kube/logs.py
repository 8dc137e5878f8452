"""Container logs the tests write and the emulator serves at ``/api/v1/namespaces/{ns}/pods/{name}/log``.

Each line keeps when it was written, for ``timestamps=true`` (RFC 3339 with nanoseconds, as the
kubelet gives them).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict


def stamped(line: str, written_ns: int) -> str:
    """``line`` as ``timestamps=true`` serves it: ``2026-12-06T20:57:38.123456789Z line``."""
    seconds, nanos = divmod(written_ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanos:09d}Z {line}"


class PodLogs:
    """Log lines per (pod name, container), and the followers that stream new lines as they are appended."""

    def __init__(self) -> None:
        self._lines: defaultdict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        self._followers: defaultdict[tuple[str, str], set[asyncio.Queue[tuple[int, str] | None]]] = defaultdict(set)

    def set(self, pod: str, container: str, lines: list[str]) -> None:
        """Replace the log of ``container`` in ``pod`` (followers see nothing of it: a restart is not emulated)."""
        written = time.time_ns()
        self._lines[pod, container] = [(written, line) for line in lines]

    def append(self, pod: str, container: str, *lines: str) -> None:
        """Add ``lines`` at the end of the log, and hand them to every follower of that container."""
        written = time.time_ns()
        self._lines[pod, container].extend((written, line) for line in lines)
        for follower in self._followers[pod, container]:
            for line in lines:
                follower.put_nowait((written, line))

    def tail(self, pod: str, container: str, count: int | None = None) -> list[tuple[int, str]]:
        """The last ``count`` lines (all of them when ``count`` is None), each with when it was written (ns)."""
        lines = self._lines[pod, container]
        return list(lines if count is None else lines[max(0, len(lines) - count) :])

    def follow(self, pod: str, container: str) -> asyncio.Queue[tuple[int, str] | None]:
        """A queue that receives every line appended from now on (with its time), then None when the stream ends."""
        follower: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self._followers[pod, container].add(follower)
        return follower

    def unfollow(self, pod: str, container: str, follower: asyncio.Queue[tuple[int, str] | None]) -> None:
        """Stop handing lines to ``follower``."""
        self._followers[pod, container].discard(follower)

    def end(self, pod: str | None = None) -> None:
        """End the streams that follow ``pod`` (it is gone), or every stream when ``pod`` is None."""
        for (name, _), followers in self._followers.items():
            if pod is None or name == pod:
                for follower in followers:
                    follower.put_nowait(None)
