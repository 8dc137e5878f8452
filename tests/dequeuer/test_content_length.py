"""Stored payloads reach the user server with a Content-Length (issue 18, point 3).

A server that reads ``Content-Length`` only, as Python's ``http.server`` does, must get every
body whole: here ``examples/hello-world/server.py`` itself, run as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import httpx
import pytest

from cortex.backends import Backends
from cortex.dequeuer.forward import forward
from cortex.gateway import create_app
from cortex.store.base import SizedBlob
from tests.dequeuer.conftest import Cluster, UserServer
from tests.helpers import api_yaml, deploy

HELLO_WORLD = Path(__file__).parents[2] / "examples" / "hello-world" / "server.py"


@contextlib.asynccontextmanager
async def hello_world_server() -> AsyncIterator[int]:
    """examples/hello-world/server.py as a process on a free port; yields the port."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELLO_WORLD),
        env={**os.environ, "CORTEX_PORT": "0"},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.startswith(b"listening on "), line
        yield int(line.split()[-1])
    finally:
        process.terminate()
        await process.communicate()  # reads its access log to the end


@pytest.mark.parametrize("size", [1 << 20, 64 * 1024 + 1])
async def test_a_large_body_reaches_a_content_length_only_server_intact(backends: Backends, size: int) -> None:
    text = secrets.token_hex(size)[: size - len('{"data": ""}')]
    body = json.dumps({"data": text}).encode()
    assert len(body) == size  # past the gateway's inline limit: stored as a blob
    await deploy(backends.catalog, api_yaml("echo"))
    async with (
        hello_world_server() as port,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(backends)), base_url="http://gw") as client,
    ):
        cluster = Cluster(backends, client, UserServer(port=port))
        rid = await cluster.submit(content=body, headers={"Content-Type": "application/json"})
        async with cluster.dequeuer():
            data = await cluster.wait(rid, timeout=30)
    assert data["status"] == "completed", data
    assert data["result"]["request_id"] == rid
    assert data["result"]["payload"] == {"data": text}


class _Framing(BaseHTTPRequestHandler):
    """Answers with the framing headers it was sent and the length of the body it read by them."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        read = len(self.rfile.read(length))
        answer = json.dumps(
            {
                "content_length": self.headers.get_all("Content-Length"),
                "transfer_encoding": self.headers.get("Transfer-Encoding"),
                "read": read,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def framing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Framing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _parts(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_blob_goes_with_its_own_length_not_a_stored_one(framing_server: str) -> None:
    blob = SizedBlob(300_000, _parts(b"a" * 100_000, b"b" * 200_000))
    stale = (("Content-Length", "5"), ("Transfer-Encoding", "chunked"))  # as an older record might hold
    async with aiohttp.ClientSession() as session:
        outcome = await forward(session, framing_server, request_id="r1", headers=stale, body=blob, timeout=10)
    assert outcome.result is not None, outcome
    assert json.loads(outcome.result) == {"content_length": ["300000"], "transfer_encoding": None, "read": 300_000}


async def test_a_blob_shorter_than_its_length_is_not_sent_short(framing_server: str) -> None:
    blob = SizedBlob(300_000, _parts(b"a" * 100_000))
    async with aiohttp.ClientSession() as session:
        outcome = await forward(session, framing_server, request_id="r2", headers=(), body=blob, timeout=10)
    assert outcome.error is not None and outcome.error.kind == "payload_lost", outcome
    assert "100000 of its 300000 bytes" in outcome.error.message
