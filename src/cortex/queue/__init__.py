"""Queues of request ids with leases; backends chosen by URL (see :mod:`cortex.backends`)."""

from __future__ import annotations

from cortex.queue.base import Depth, Lease, Queue

__all__ = ["Depth", "Lease", "Queue"]
