"""A dequeuer started before its backend: it keeps its process, says so on its admin port, then works.

``python -m cortex.dequeuer`` (what the runtimes start) runs as a real process; its backend is a server of
the test's own (:mod:`tests.servers`), started on a free port only after the dequeuer. A URL a retry
cannot fix (unknown scheme, refused login) still ends the process at once, with a clear message.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cortex.backends import BackendUrls, open_backends
from cortex.gateway import create_app
from tests.dequeuer.conftest import UserServer
from tests.e2e.conftest import free_port
from tests.gateway.test_start_unreachable import server_on, url_on
from tests.helpers import api_yaml, deploy
from tests.servers.cutter import Cutter, cutter


async def _health(admin: int, started: float) -> httpx.Response:
    """The dequeuer's ``/healthz``, once its admin port answers (within 30 s)."""
    async with httpx.AsyncClient() as client:
        while True:
            try:
                return await client.get(f"http://127.0.0.1:{admin}/healthz")
            except httpx.TransportError:
                assert time.monotonic() - started < 30, "the dequeuer's admin port did not answer within 30s"
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_a_dequeuer_started_before_its_backend_waits_for_it_then_works(
    backend: str, tmp_path: Path, user_server: UserServer
) -> None:
    port, admin = free_port(), free_port()
    url = url_on(backend, port)
    urls = BackendUrls(queue=url, store=url, blobs=f"file:///{tmp_path / 'blobs'}")
    # the dequeuer reaches the port through a proxy, cut while the API is deployed: a dequeuer that
    # reached its backend before the deploy would rightly exit (its API is not deployed)
    async with cutter("127.0.0.1", port) as proxy:
        await _started_before_its_backend(backend, tmp_path, user_server, proxy, urls, admin)


async def _started_before_its_backend(
    backend: str, tmp_path: Path, user_server: UserServer, proxy: Cutter, urls: BackendUrls, admin: int
) -> None:
    port = urlsplit(urls.queue).port or 0
    url = url_on(backend, proxy.port) + ("&socket_timeout=2" if backend == "redis" else "")
    argv = [sys.executable, "-m", "cortex.dequeuer", "--api", "echo", "--user-port", str(user_server.port)]
    argv += ["--admin-port", str(admin), "--queue", url, "--store", url, "--blobs", urls.blobs]
    log = tmp_path / "dequeuer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        waiting = await _health(admin, started)
        assert waiting.status_code == 503 and "waiting for the backend" in waiting.text
        await asyncio.sleep(2)  # a few tries fail meanwhile: none ends the process, none logs another line
        assert process.poll() is None, log.read_text()
        assert (await _health(admin, started)).status_code == 503

        (tmp_path / "server").mkdir()
        proxy.blackhole()
        async with server_on(backend, port, tmp_path / "server"):
            backends = await open_backends(urls)
            try:
                await deploy(backends.catalog, api_yaml("echo"))
                proxy.heal()
                started = time.monotonic()
                while (await _health(admin, started)).status_code != 200:
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() - started < 30, "the dequeuer was not healthy within 30s of its backend"
                    await asyncio.sleep(0.1)
                app = create_app(backends=backends)
                gateway = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
                async with gateway:
                    request_id = (await gateway.post("/echo", json={"n": 1})).json()["id"]
                    while (record := (await gateway.get(f"/echo/{request_id}")).json())["status"] != "completed":
                        assert record["status"] in ("in_queue", "in_progress"), record
                        assert time.monotonic() - started < 30, "the request was not done within 30s"
                        await asyncio.sleep(0.05)
            finally:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)
                await backends.aclose()
        assert process.returncode == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = log.read_text()
    assert said.count("cannot reach its backend yet") == 1, said
    assert said.count("reached its backend") == 1, said
    assert "Traceback" not in said


@pytest.mark.parametrize(
    ("url", "message"),
    [("foo://127.0.0.1/x", "unsupported queue URL"), ("redis://nobody:wrong@127.0.0.1:6379/0", "username-password")],
)
def test_a_url_no_retry_can_fix_ends_the_dequeuer_at_once(url: str, message: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "cortex.dequeuer", "--api", "echo", "--user-port", "9", "--admin-port", "0"]
    argv += ["--queue", url, "--store", url, "--blobs", f"file:///{tmp_path / 'blobs'}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


async def test_a_dequeuer_waiting_for_its_backend_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    url = url_on("redis", free_port())
    argv = [sys.executable, "-m", "cortex.dequeuer", "--api", "echo", "--user-port", "9"]
    argv += ["--admin-port", str(admin := free_port()), "--queue", url, "--store", url]
    argv += ["--blobs", f"file:///{tmp_path / 'blobs'}"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert (await _health(admin, time.monotonic())).status_code == 503
        process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out.decode()
    assert b"stopped before its backend answered" in out and b"Traceback" not in out
