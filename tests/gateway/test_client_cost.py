"""What one client may cost the real gateway process (issue 18, point 4), with its limits lowered.

Connections over the caps are refused at once, so trickling clients from one address cannot take
the gateway from others; a body must arrive at a minimum rate; trailers are dropped; header bytes
pass unchanged or are refused. Other loopback addresses (127.0.0.2, ...) play the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortex.backends import BackendUrls, open_backends
from cortex.requests import now
from tests.gateway.live import exchange, live_gateway, read_until_closed
from tests.gateway.test_http_limits import assert_refused, parse, post
from tests.helpers import api_yaml

PER_ADDRESS = 4
TOTAL = 8
#: the whole body's deadline and the rate that extends it, lowered so the test is short
BODY_DEADLINE = 1.0
MIN_RATE = 1000


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cost")


@pytest.fixture(scope="module")
def gateway(state_dir: Path) -> Iterator[str]:
    """Low connection caps; the body deadline stays long, so the tricklers are held for the whole test."""
    options = ("--max-connections-per-address", str(PER_ADDRESS), "--max-connections", str(TOTAL))
    with live_gateway(state_dir, [api_yaml("echo")], *options) as url:
        yield url


@pytest.fixture(scope="module")
def hasty_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A short whole-body deadline; the 30 s gap between two chunks is never reached."""
    options = ("--body-deadline", str(BODY_DEADLINE), "--min-body-rate", str(MIN_RATE), "--body-timeout", "30")
    with live_gateway(tmp_path_factory.mktemp("hasty"), [api_yaml("echo")], *options) as url:
        yield url


def _connect(gateway: str, source: str) -> socket.socket:
    host, port = gateway.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    return sock


def _submit_from(gateway: str, source: str) -> tuple[int, dict[str, str], bytes]:
    with _connect(gateway, source) as sock:
        sock.sendall(post("Connection: close\r\n", b'{"from": "elsewhere"}'))
        return parse(read_until_closed(sock, wait=30))


@contextlib.contextmanager
def _tricklers(gateway: str, source: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections from ``source``, each with a request head sent and its body still to come."""
    socks = []
    try:
        for _ in range(count):
            sock = _connect(gateway, source)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\nx")
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_tricklers_past_the_per_address_cap_leave_other_clients_served(gateway: str) -> None:
    with _tricklers(gateway, "127.0.0.1", PER_ADDRESS):
        for _ in range(3 * PER_ADDRESS):  # more from the same address: each refused at once
            with _connect(gateway, "127.0.0.1") as sock:
                refused = read_until_closed(sock, wait=30)
            assert_refused(refused, 429, f"too many connections from 127.0.0.1 ({PER_ADDRESS} open)")
            assert parse(refused)[1]["retry-after"] == "1"
        code, _, body = _submit_from(gateway, "127.0.0.2")  # another client
        assert code == 200 and json.loads(body)["id"]


def test_past_the_total_cap_new_connections_are_503_until_some_close(gateway: str) -> None:
    sources = [f"127.0.0.{n}" for n in range(3, 3 + TOTAL // PER_ADDRESS)]
    with contextlib.ExitStack() as stack:
        for source in sources:
            stack.enter_context(_tricklers(gateway, source, PER_ADDRESS))
        with _connect(gateway, "127.0.0.20") as sock:
            assert_refused(read_until_closed(sock, wait=30), 503, f"the gateway has {TOTAL} connections open")
    code, _, _ = _submit_with_retries(gateway, "127.0.0.20")  # closed: the gateway counts them down
    assert code == 200


def _submit_with_retries(gateway: str, source: str, attempts: int = 100) -> tuple[int, dict[str, str], bytes]:
    """Submit until the gateway has seen the closed connections go (at most ``attempts`` times)."""
    for _ in range(attempts):
        answer = _submit_from(gateway, source)
        if answer[0] != 503:
            return answer
        threading.Event().wait(0.05)
    return answer


def test_a_body_trickled_under_the_minimum_rate_is_408(hasty_gateway: str) -> None:
    with _connect(hasty_gateway, "127.0.0.30") as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n")
        stop = threading.Event()

        def trickle() -> None:  # a byte every 0.1 s: never idle for the 30 s body timeout, far under the rate
            for _ in range(999):
                if stop.wait(0.1):
                    return
                try:
                    sock.sendall(b"x")
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            answer = read_until_closed(sock, wait=30)
        finally:
            stop.set()
            sender.join()
    assert_refused(answer, 408, "the body did not arrive in time")
    assert "nothing was stored" in json.loads(parse(answer)[2])["error"]


def test_a_body_at_the_rate_is_not_cut(hasty_gateway: str) -> None:
    # 30 KB in pieces of 2 KB every 0.1 s: 20 KB/s, well over the minimum rate, for longer than the first deadline
    with _connect(hasty_gateway, "127.0.0.31") as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 30000\r\nConnection: close\r\n\r\n")
        for _ in range(15):
            sock.sendall(b"y" * 2000)
            threading.Event().wait(0.1)
        code, _, body = parse(read_until_closed(sock, wait=30))
    assert code == 200, body


def _stored_headers(state_dir: Path, request_id: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        backends = await open_backends(BackendUrls.for_state_dir(state_dir))
        try:
            record = await backends.records.start("echo", request_id, attempts=1, now=now())
            assert record is not None
            return {name.lower(): value for name, value in record.headers}
        finally:
            await backends.aclose()

    return asyncio.run(read())


def test_trailers_are_dropped(gateway: str, state_dir: Path) -> None:
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nX-Before: head\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-After: trailer\r\nX-Cortex-Request-ID: forged\r\n\r\n"
    )
    code, _, body = parse(exchange(gateway, raw))
    assert code == 200, body
    headers = _stored_headers(state_dir, json.loads(body)["id"])
    assert headers["x-before"] == "head"
    assert "x-after" not in headers and "x-cortex-request-id" not in headers


def test_utf8_header_bytes_are_stored_as_sent(gateway: str, state_dir: Path) -> None:
    raw = post("X-Name: Zoë 東京\r\nConnection: close\r\n")  # encoded as UTF-8
    code, _, body = parse(exchange(gateway, raw))
    assert code == 200, body
    stored = _stored_headers(state_dir, json.loads(body)["id"])["x-name"]
    assert stored.encode("latin-1") == "Zoë 東京".encode()  # the bytes, one for one


def test_header_bytes_that_are_not_utf8_are_400(gateway: str) -> None:
    raw = post("X-Name: caf\xe9\r\nConnection: close\r\n").replace("é".encode(), b"\xe9")
    assert b"\xe9" in raw
    assert_refused(exchange(gateway, raw), 400, "the value of header X-Name is not UTF-8")


def test_a_trailer_that_never_ends_is_cut_off(gateway: str) -> None:
    # the parser keeps a trailer whole until its end: this one has none
    sent, limit = 0, 64 * 2**20
    with _connect(gateway, "127.0.0.40") as sock:
        sock.settimeout(5)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Big: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < limit:  # more than the socket buffers hold: the gateway must close first
                sock.sendall(b"a" * 65536)
                sent += 65536
        answer = read_until_closed(sock, wait=5)
    assert sent < limit, "the gateway kept reading the trailer"
    if answer:  # closed with bytes unread, the client may see a reset instead of the 431
        assert_refused(answer, 431, "the body's chunk framing and trailers are larger than")


def test_many_small_chunks_are_served(gateway: str) -> None:
    chunks = b"".join(b"1\r\n%c\r\n" % (ord("a") + n % 26) for n in range(20_000))  # 120 KB of framing for 20 KB
    raw = b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    code, _, body = parse(exchange(gateway, raw + chunks + b"0\r\n\r\n"))
    assert code == 200, body
