"""The wake benchmark's user server: stdlib only, so it starts fast; it writes down when it did what.

It listens on ``$CORTEX_PORT`` and answers ``{}`` to ``POST /`` and ``200`` to anything else. With
``$WAKE_TRACE`` set, it writes into ``$WAKE_TRACE/<pid>.json``, in Unix seconds: ``started`` (this
script's first line ran: the interpreter is up), ``listening`` (the socket bound and listening) and
``dispatched`` (the first ``POST /`` received). ``$WAKE_DELAY`` seconds of sleep before it binds
stand for a server that loads a model. HTTP/1.0, one write per answer: no keep-alive trap.
"""

from __future__ import annotations

import time

TIMES: dict[str, float] = {"started": time.time()}

import json  # noqa: E402 - the start is taken before anything else
import os  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from pathlib import Path  # noqa: E402

TRACE = Path(os.environ["WAKE_TRACE"]) if os.environ.get("WAKE_TRACE") else None
PORT = int(os.environ.get("CORTEX_PORT", "8080"))


def record(name: str) -> None:
    if TRACE is not None and name not in TIMES:
        TIMES[name] = time.time()
        tmp = TRACE / f"{os.getpid()}.tmp"
        tmp.write_text(json.dumps(TIMES))
        tmp.replace(TRACE / f"{os.getpid()}.json")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        record("dispatched")
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer(b"{}")

    def do_GET(self) -> None:
        self._answer(b"{}")

    def _answer(self, body: bytes) -> None:
        head = f"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    time.sleep(float(os.environ.get("WAKE_DELAY") or 0))
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    record("listening")
    server.serve_forever()
