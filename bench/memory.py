"""Scenario (e)'s tool: the resident memory of a process, sampled while something runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from bench.procs import memory_mb


class PeakRss:
    """The highest VmRSS (MB) seen while the ``with`` block runs, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, KeyError):
                self.peak_mb = max(self.peak_mb, memory_mb(self.pid)["VmRSS"])
            if self._stop.wait(self.interval):
                return

    @contextlib.contextmanager
    def watching(self) -> Iterator[PeakRss]:
        """Sample in a thread for the duration of the block."""
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
