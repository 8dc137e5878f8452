"""The real gateway process (``cortex gateway``) against abuse that only its HTTP server sees.

Malformed and oversized request heads, heads and bodies that stall, bodies cut short: each is
answered with JSON ``{"error"}`` naming what was wrong (or, for a client that is gone, with
nothing), the connection is closed, nothing is stored or queued, and the gateway keeps serving.
Raw sockets, since an HTTP client would refuse to send most of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from tests.gateway.live import exchange, live_gateway, read_until_closed
from tests.helpers import api_yaml

#: the gateway's deadlines in these tests (``--header-timeout``, ``--body-timeout``)
TIMEOUT = 1.0
#: the gateway's default limit on a request's line and headers
MAX_HEAD = 64 * 1024


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits")


@pytest.fixture(scope="module")
def gateway(state_dir: Path) -> Iterator[str]:
    apis = [api_yaml("echo", extra="async: {max_payload_size: 1Mi}")]
    timeouts = ("--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT))
    with live_gateway(state_dir, apis, *timeouts) as url:
        yield url


def queued(state_dir: Path) -> int:
    async def depth() -> int:
        backends = await open_backends(BackendUrls.for_state_dir(state_dir))
        try:
            return (await backends.queue.depth("echo")).queued
        finally:
            await backends.aclose()

    return asyncio.run(depth())


def blob_files(state_dir: Path) -> list[str]:
    return [path.name for path in (state_dir / "blobs").rglob("*") if path.is_file()]


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lowercase names) and body of one raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def assert_refused(raw: bytes, status: int, words: str) -> None:
    code, headers, body = parse(raw)
    assert code == status, raw[:300]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert words in json.loads(body)["error"]


def post(head: str = "", body: bytes = b"x") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


MALFORMED = [
    (b"GARBAGE\r\n\r\n", "Invalid method"),
    (b"GET /healthz HTTP/9.9\r\nHost: gw\r\n\r\n", "Invalid HTTP version"),
    (b"GET /echo/\x00 HTTP/1.1\r\nHost: gw\r\n\r\n", "Invalid char in url path"),
    (b"GET /\xc3\xa9cho HTTP/1.1\r\nHost: gw\r\n\r\n", "Invalid char in url path"),
    (b"GET /healthz HTTP/1.1\r\nHost: gw\r\nNoColon\r\n\r\n", "Invalid header token"),
    (b"GET /healthz HTTP/1.1\r\nHost: gw\r\nBad Name: v\r\n\r\n", "Invalid header token"),
    (post("X-Custom: a\x00b\r\n"), "Invalid header value char"),
    (post("Idempotency-Key: a\x01b\r\n"), "Invalid header value char"),
    (b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX: a\r\n  folded\r\n\r\n", "Unexpected whitespace after header value"),
    (b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: abc\r\n\r\nx", "Invalid character in Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\nx", "Invalid character in Content-Length"),
    (b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999999\r\n\r\nx", "Content-Length overflow"),
    (
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        "Duplicate Content-Length",
    ),
    (
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n",
        "Transfer-Encoding can't be present with Content-Length",
    ),
    (
        b"POST /echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n",
        "Invalid character in chunk size",
    ),
]


@pytest.mark.parametrize(("request_bytes", "reason"), MALFORMED, ids=[reason for _, reason in MALFORMED])
def test_malformed_requests_are_400_with_the_parsers_reason(
    gateway: str, state_dir: Path, request_bytes: bytes, reason: str
) -> None:
    before = queued(state_dir)
    assert_refused(exchange(gateway, request_bytes), 400, f"malformed HTTP request: {reason}")
    assert queued(state_dir) == before


@pytest.mark.parametrize(
    "request_bytes",
    [
        post("X-Big: " + "a" * MAX_HEAD + "\r\n"),
        post("".join(f"X-{i}: v\r\n" for i in range(MAX_HEAD // 8))),
        b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\nHost: gw\r\n\r\n",
    ],
    ids=["one-large-header", "many-headers", "long-url"],
)
def test_heads_over_the_limit_are_431(gateway: str, state_dir: Path, request_bytes: bytes) -> None:
    before = queued(state_dir)
    answer = exchange(gateway, request_bytes)
    assert_refused(answer, 431, f"the request line and headers are larger than {MAX_HEAD} bytes")
    assert queued(state_dir) == before


def test_a_flood_of_header_bytes_is_cut_off(gateway: str) -> None:
    # The gateway closes with most of the 8 MiB unread, so the client may see a reset instead of the 431.
    started = time.monotonic()
    answer = exchange(gateway, post("X-Huge: " + "a" * (8 * 2**20) + "\r\n"))
    assert time.monotonic() - started < 5
    if answer:
        assert_refused(answer, 431, f"the request line and headers are larger than {MAX_HEAD} bytes")


def test_an_endless_header_is_cut_off_before_its_end(gateway: str) -> None:
    # httptools hands a header over only once it is complete: this one never is
    sent, limit = 0, 64 * 2**20
    with socket.create_connection(_address(gateway)) as sock:
        sock.settimeout(5)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: gw\r\nX-Endless: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < limit:  # more than the socket buffers hold: the gateway must close first
                sock.sendall(b"a" * 65536)
                sent += 65536
        answer = read_until_closed(sock, wait=5)
    assert sent < limit, "the gateway kept reading the header"
    if answer:
        assert_refused(answer, 431, f"the request line and headers are larger than {MAX_HEAD} bytes")


def test_a_head_under_the_limit_is_served(gateway: str, state_dir: Path) -> None:
    head = "".join(f"X-Meta-{i}: {'v' * 100}\r\n" for i in range(400)) + "Connection: close\r\n"  # about 45 KiB
    code, _, body = parse(exchange(gateway, post(head)))
    assert code == 200 and re.fullmatch(rb'\{"id":"[0-9a-z]{26}"\}', body)


def test_a_stalled_head_is_408_and_the_connection_closed(gateway: str) -> None:
    for sent in (b"POST /echo HTTP/1.1\r\nHost: gw\r\nX-Slow:", b""):  # mid-header, and not a byte at all
        started = time.monotonic()
        with socket.create_connection(_address(gateway)) as sock:
            sock.sendall(sent)
            answer = read_until_closed(sock, wait=TIMEOUT + 10)
        assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 5
        if sent:
            assert_refused(answer, 408, f"the request's headers did not arrive within {TIMEOUT:g}s")
        else:  # no request to answer: closed without a word
            assert answer == b""


def test_a_stalled_body_is_408_and_nothing_is_stored(gateway: str, state_dir: Path) -> None:
    before = queued(state_dir)
    for declared, sent in ((100, 10), (400_000, 200_000)):  # kept in the record, or streamed to a blob
        started = time.monotonic()
        with socket.create_connection(_address(gateway)) as sock:
            sock.sendall(f"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: {declared}\r\n\r\n".encode())
            sock.sendall(b"z" * sent)
            answer = read_until_closed(sock, wait=TIMEOUT + 10)
        assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 5
        assert_refused(answer, 408, f"the body stopped arriving for {TIMEOUT:g}s; nothing was stored")
        assert queued(state_dir) == before and blob_files(state_dir) == []


def test_a_body_cut_short_is_not_stored(gateway: str, state_dir: Path) -> None:
    cut, before = _answered(gateway, 400), queued(state_dir)
    for declared, sent in ((100, 10), (400_000, 200_000)):
        with socket.create_connection(_address(gateway)) as sock:
            sock.sendall(f"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: {declared}\r\n\r\n".encode())
            sock.sendall(b"z" * sent)
    # the client is gone: the gateway's 400 only shows in its metrics
    deadline = time.monotonic() + 10
    while _answered(gateway, 400) < cut + 2:
        assert time.monotonic() < deadline, "the gateway did not finish the cut requests"
        time.sleep(0.05)
    assert queued(state_dir) == before and blob_files(state_dir) == []


@pytest.mark.parametrize(
    ("line", "status", "words"),
    [
        ("GET /echo/../../etc/passwd", 404, "no API is deployed at /echo/../../etc/passwd"),
        ("POST /echo/..", 405, "method POST is not allowed on /echo/..: use GET /echo/<id>"),
        ("GET /echo/%2e%2e%2f%2e%2e%2fblobs", 404, "no API is deployed at /echo/../../blobs"),
        ("POST /echo%00", 404, "no API is deployed at /echo\x00"),
        ("GET /echo/%ff%fe", 404, "request \ufffd\ufffd of api echo not found"),
        ("DELETE /echo/" + "9" * 3000, 404, "request 9999"),
    ],
)
def test_path_tricks_on_the_wire_are_4xx(gateway: str, line: str, status: int, words: str) -> None:
    assert_refused(
        exchange(gateway, f"{line} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()), status, words
    )


def test_a_non_ascii_idempotency_key_is_400(gateway: str) -> None:
    raw = post("Idempotency-Key: café\r\nConnection: close\r\n")  # UTF-8: bytes that are not are refused before
    assert_refused(exchange(gateway, raw), 400, "Idempotency-Key must be 1 to 255 printable characters (ASCII")


def test_the_gateway_still_serves_after_all_that(gateway: str) -> None:
    assert httpx.get(f"{gateway}/healthz").text == "ok"
    assert httpx.post(f"{gateway}/echo", content=b"{}").status_code == 200


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _answered(url: str, code: int) -> float:
    """How many submissions to echo the gateway answered with ``code`` (its own metrics)."""
    pattern = rf'cortex_async_gateway_requests_total\{{api_name="echo",code="{code}",route="submit"\}} (\S+)'
    found = re.search(pattern, httpx.get(f"{url}/metrics").text)
    return float(found.group(1)) if found else 0.0
