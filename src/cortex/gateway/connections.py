"""How many connections a gateway process holds open, in all and per client address.

One client must not be able to take every file descriptor of the gateway: each connection costs
one, and a client trickling a byte now and then can hold thousands. :class:`ConnectionCounts`
admits a new connection only under both caps of :class:`ConnectionCaps`; the protocol answers the
others at once and closes them, so they cost a descriptor for an instant only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

#: at most one log line per this many seconds about refused connections (an attack must not flood the log)
LOG_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionCaps:
    """Open connections one gateway process accepts; 0 turns a cap off."""

    #: in all; keep it under the process's open-file limit (``ulimit -n``), which backends and blobs share
    total: int = 4096
    #: from one client address; behind a proxy or load balancer every client has its address, so raise it there
    per_address: int = 256


class ConnectionCounts:
    """The open connections of one process (each ``--workers`` process counts its own)."""

    def __init__(self, caps: ConnectionCaps | None = None) -> None:
        self.caps = caps or ConnectionCaps()
        self.total = 0
        self._by_address: Counter[str] = Counter()
        self._refused = 0
        self._logged_at = float("-inf")

    def open(self, address: str) -> tuple[int, str] | None:
        """Count a new connection from ``address``; or, over a cap, the status and message to refuse it with."""
        refusal: tuple[int, str] | None = None
        if self.caps.total and self.total >= self.caps.total:
            refusal = 503, f"the gateway has {self.total} connections open, its limit; try again shortly"
        elif self.caps.per_address and self._by_address[address] >= self.caps.per_address:
            refusal = 429, f"too many connections from {address} ({self.caps.per_address} open); close some first"
        if refusal is not None:
            self._note_refusal(address, refusal[1])
            return refusal
        self.total += 1
        self._by_address[address] += 1
        return None

    def close(self, address: str) -> None:
        """Count a connection :meth:`open` admitted as closed."""
        self.total -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]

    def from_address(self, address: str) -> int:
        """Connections open from ``address``."""
        return self._by_address.get(address, 0)

    def _note_refusal(self, address: str, message: str) -> None:
        self._refused += 1
        at = time.monotonic()
        if at - self._logged_at >= LOG_INTERVAL:
            log.warning("refused %d connection(s) over the gateway's caps, the last: %s", self._refused, message)
            self._refused = 0
            self._logged_at = at
