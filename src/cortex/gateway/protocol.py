"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with the limits it lacks.

uvicorn bounds neither the size of a request's head (request line and headers) nor the time the
head may take to arrive: a client could hold a connection forever by sending nothing, or a header
a byte at a time, and could send megabytes of headers, which the gateway would keep in memory and
then store with the request. :class:`GatewayHttpProtocol` answers ``431`` past
:attr:`HttpLimits.max_head_size`, ``408`` when a head is not complete within
:attr:`HttpLimits.head_timeout`, and answers the requests the parser refuses (uvicorn's plain
``400 Invalid HTTP request received.``) with the reason; all three as the gateway's other errors,
JSON ``{"error": ...}``, and each closes the connection.

The body has its own deadline, kept by the app (:attr:`cortex.gateway.app.GatewaySettings.body_timeout`).
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

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request's head may cost the gateway."""

    #: bytes of request line and headers; nginx's default is 32 KiB, Node's 16 KiB, Go's 1 MiB
    max_head_size: int = 64 * 1024
    #: seconds from a connection's opening, or a request's first byte, until its headers are complete
    head_timeout: float = 10.0


class GatewayHttpProtocol(HttpToolsProtocol):
    """One connection; see the module's docstring."""

    def __init__(self, *args: Any, limits: HttpLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits or HttpLimits()
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
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
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

    def on_url(self, url: bytes) -> None:
        self._measure(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._measure(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

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

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"error": message}`` and close the connection."""
        self._end_head()
        log.info("refused a request from %s: %s", self.client, message)
        body = json.dumps({"error": message}).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
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
    worker processes of ``--workers``; uvicorn only calls it.
    """
    return cast(type[asyncio.Protocol], functools.partial(GatewayHttpProtocol, limits=limits))
