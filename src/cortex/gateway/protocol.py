"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with the limits it lacks.

uvicorn bounds neither the size of a request's head (request line and headers) nor the time the
head may take to arrive: a client could hold a connection forever by sending nothing, or a header
a byte at a time, and could send megabytes of headers, which the gateway would keep in memory and
then store with the request. :class:`GatewayHttpProtocol` answers ``431`` past
:attr:`HttpLimits.max_head_size`, ``408`` when a head is not complete within
:attr:`HttpLimits.head_timeout`, and answers the requests the parser refuses (uvicorn's plain
``400 Invalid HTTP request received.``) with the reason; all three as the gateway's other errors,
JSON ``{"error": ...}``, and each closes the connection.

What a client may cost is bounded here too:

- **Connections**: at most :attr:`ConnectionCaps.total` open in all and
  :attr:`ConnectionCaps.per_address` from one client address; a connection over a cap is answered
  ``503`` (total) or ``429`` (its address) at once and closed.
- **The whole body**: it must arrive within :attr:`HttpLimits.body_deadline` seconds, extended
  by a second for every :attr:`HttpLimits.min_body_rate` bytes received (Apache's
  ``mod_reqtimeout`` ``body=...,MinRate=...``): a client trickling a byte now and then is answered
  ``408`` and closed, however regular its bytes. The app keeps the gap between two chunks
  (:attr:`cortex.gateway.app.GatewaySettings.body_timeout`).
- **Trailers** (header fields after a chunked body) are dropped: never stored or forwarded. With
  the chunks' framing (sizes, extensions), they may take :attr:`HttpLimits.max_head_size` bytes
  plus 32 a chunk, else ``431``: the parser would keep a trailer whole in memory.
- **Header bytes** are passed on unchanged, so a value must be UTF-8 (ASCII included), the one
  encoding the dequeuer's HTTP client sends byte for byte; any other value is answered ``400``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http
import json
import logging
import sys
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cortex.gateway.connections import ConnectionCaps, ConnectionCounts

log = logging.getLogger(__name__)

#: bytes of framing a chunk may take (its size in hex, extensions, CRLFs) beyond the trailers' allowance
CHUNK_FRAMING = 32


@dataclasses.dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request's head may cost the gateway."""

    #: bytes of request line and headers; nginx's default is 32 KiB, Node's 16 KiB, Go's 1 MiB
    max_head_size: int = 64 * 1024
    #: seconds from a connection's opening, or a request's first byte, until its headers are complete
    head_timeout: float = 10.0
    #: seconds a request's body may take to arrive at first (``--body-deadline``) ...
    body_deadline: float = 60.0
    #: ... and the bytes that buy it one second more (``--min-body-rate``)
    min_body_rate: int = 1024
    #: open connections in all and per client address (``--max-connections``, ``--max-connections-per-address``)
    connections: ConnectionCaps = dataclasses.field(default_factory=ConnectionCaps)


class GatewayHttpProtocol(HttpToolsProtocol):
    """One connection; see the module's docstring."""

    def __init__(
        self, *args: Any, limits: HttpLimits | None = None, counts: ConnectionCounts | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits or HttpLimits()
        self._counts = counts if counts is not None else ConnectionCounts(self._limits.connections)
        #: the client address this connection is counted under, once admitted
        self._counted: str | None = None
        #: the current request's body: when it began, bytes so far, the timer of its deadline; None outside a body
        self._body_began: float | None = None
        self._body_bytes = 0
        self._body_timer: asyncio.TimerHandle | None = None
        #: bytes received while in the body (its chunks' framing and trailers included), and its chunks
        self._body_wire = 0
        self._chunks = 0
        #: bodies begun on this connection (which one a chunk of data fell in)
        self._bodies = 0
        #: bytes received since the current head began, while it is incomplete; None between heads
        self._head_bytes: int | None = None
        #: bytes of the current head's request line and headers, as parsed
        self._head_size = 0
        #: whether a request's first byte arrived (a connection that sent nothing is closed without an answer)
        self._head_begun = False
        self._head_timer: asyncio.TimerHandle | None = None
        #: the answer to send instead of uvicorn's 400 when a callback stopped the parser
        self._refusal: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        refusal = self._counts.open(address)
        if refusal is not None:
            self._refuse(*refusal, retry_after=1, quiet=True)
            return
        self._counted = address
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted is not None:
            self._counts.close(self._counted)
            self._counted = None
        self._end_head()
        self._end_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        body = self._bodies if self._body_began is not None else None
        super().data_received(data)
        if body == self._bodies and self._body_began is not None and not self.transport.is_closing():
            # all of it within one body: what is not body is framing or trailers, which the parser keeps
            self._body_wire += len(data)
            allowed = self._limits.max_head_size + CHUNK_FRAMING * self._chunks
            if self._body_wire - self._body_bytes > allowed:
                self._abort(431, f"the body's chunk framing and trailers are larger than {allowed} bytes")
            return
        # A head completed by this chunk was measured by on_url and on_header; one still incomplete
        # is measured here, since httptools buffers a header until its end before calling on_header.
        # The bytes of earlier chunks only: this one may also hold the end of a pipelined request.
        if self._head_bytes is not None and not self.transport.is_closing():
            if self._head_bytes > self._limits.max_head_size:
                self._refuse(*self._too_large())
                return
            self._head_bytes += len(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._start_head()
        self._head_begun = True
        self._end_body()

    def on_url(self, url: bytes) -> None:
        self._measure(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._body_began is not None:
            return  # a trailer, after a chunked body: dropped, or it would join the stored headers
        self._measure(len(name) + len(value) + 4)  # ": " and CRLF
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                shown = name.decode("ascii", errors="replace")
                self._refusal = 400, f"the value of header {shown} is not UTF-8: headers are passed on unchanged"
                raise ValueError(self._refusal[1]) from None
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head()
        self._start_body()
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._end_body()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from its ``except httptools.HttpParserError``: the parser's reason is at hand
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return
        reason = sys.exception()
        detail = f": {reason}" if reason is not None and str(reason) else ""
        self._refuse(400, f"malformed HTTP request{detail}")

    def _measure(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._limits.max_head_size:
            self._refusal = self._too_large()
            raise ValueError(self._refusal[1])  # httptools stops parsing; uvicorn calls send_400_response

    def _too_large(self) -> tuple[int, str]:
        return 431, f"the request line and headers are larger than {self._limits.max_head_size} bytes"

    def _start_head(self) -> None:
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.head_timeout, self._head_timed_out)

    def _end_head(self) -> None:
        self._head_bytes = None
        self._head_begun = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes is None or self.transport.is_closing():
            return
        if not self._head_begun:  # an idle connection, as a client's pool may open: no request to answer
            self._end_head()
            self.transport.close()
            return
        self._refuse(408, f"the request's headers did not arrive within {self._limits.head_timeout:g}s")

    def _start_body(self) -> None:
        self._body_began = self.loop.time()
        self._body_bytes = self._body_wire = self._chunks = 0
        self._bodies += 1
        self._body_timer = self.loop.call_at(self._body_due(), self._body_check)

    def _end_body(self) -> None:
        self._body_began = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_due(self) -> float:
        assert self._body_began is not None
        return self._body_began + self._limits.body_deadline + self._body_bytes / self._limits.min_body_rate

    def _body_check(self) -> None:
        self._body_timer = None
        if self._body_began is None or self.transport.is_closing():
            return
        due = self._body_due()
        if self.loop.time() < due:  # bytes came meanwhile: the deadline moved
            self._body_timer = self.loop.call_at(due, self._body_check)
            return
        message = (
            f"the body did not arrive in time: {self._body_bytes} bytes in {self._limits.body_deadline:g}s"
            f" plus a second per {self._limits.min_body_rate} bytes; nothing was stored"
        )
        self._abort(408, message)

    def _abort(self, status: int, message: str) -> None:
        """End a request whose body is arriving: answer ``status`` unless an answer began, and close."""
        self._end_body()
        if self.cycle is not None and self.cycle.response_started:
            log.info("closed a connection from %s: %s", self.client, message)
            self.transport.close()
            return
        self._refuse(status, message)

    def _refuse(self, status: int, message: str, *, retry_after: int | None = None, quiet: bool = False) -> None:
        """Answer ``status`` with ``{"error": message}`` and close the connection (``quiet``: not logged)."""
        self._end_head()
        self._end_body()
        if not quiet:
            log.info("refused a request from %s: %s", self.client, message)
        body = json.dumps({"error": message}).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        if retry_after is not None:
            head.append(b"retry-after: %d\r\n" % retry_after)
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def protocol_factory(limits: HttpLimits) -> type[asyncio.Protocol]:
    """What to pass to ``uvicorn.run(http=...)``: :class:`GatewayHttpProtocol` bound to ``limits``.

    A ``functools.partial`` rather than a subclass, so that it pickles by reference to the
    worker processes of ``--workers``; uvicorn only calls it. Each process unpickles its own
    :class:`ConnectionCounts`, so the connection caps hold per process.
    """
    counts = ConnectionCounts(limits.connections)
    return cast(type[asyncio.Protocol], functools.partial(GatewayHttpProtocol, limits=limits, counts=counts))
