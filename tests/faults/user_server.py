"""The fault tests' user server: stdlib only, run by the local cluster as a container.

Serves on ``$CORTEX_PORT``. ``POST /`` with a JSON body answers ``{"request_id", "payload"}``: the
``X-Cortex-Request-ID`` it was given and the body it was sent, after sleeping ``payload["sleep"]``
seconds if there is such a key (so that a kill finds requests running). Each run is traced first, as
an empty file ``$TEST_TRACE_DIR/<request id>.<pid>.<n>``: a request found twice there ran twice.
``GET /healthz`` answers 200.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RUNS = itertools.count()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request_id = self.headers.get("X-Cortex-Request-ID", "")
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        Path(os.environ["TEST_TRACE_DIR"], f"{request_id}.{os.getpid()}.{next(RUNS)}").touch()
        if isinstance(payload, dict) and "sleep" in payload:
            time.sleep(float(payload["sleep"]))
        self._send(200, json.dumps({"request_id": request_id, "payload": payload}).encode(), "application/json")

    def do_GET(self) -> None:
        self._send(200, b"ok", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
