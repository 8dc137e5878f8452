"""A user server that reports its progress while it works, written with the standard library only.

``POST /`` with ``{"steps": N, "seconds": S}`` works N steps of S seconds each and, after each one,
reports ``{"step": i, "of": N}`` to its replica's dequeuer: ``POST $CORTEX_DEQUEUER_URL/progress``
with the request's ``X-Cortex-Request-ID``. The client sees it in ``GET /<api>/<id>`` (``progress``)
and as ``event: progress`` on ``GET /<api>/<id>/events``. It listens on $CORTEX_PORT (8080 on
Kubernetes) and answers ``GET /healthz`` with 200.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def report(request_id: str, progress: object) -> None:
    """Tell the dequeuer how far this request got; progress is advisory, so a failure is only printed."""
    base = os.environ.get("CORTEX_DEQUEUER_URL")
    if not base:  # run outside cortex-async
        return
    request = urllib.request.Request(
        f"{base}/progress",
        data=json.dumps(progress).encode(),
        headers={"X-Cortex-Request-ID": request_id, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass  # 202: taken (stored within half a second, the latest value winning)
    except (urllib.error.URLError, OSError) as exc:
        print(f"progress of {request_id} not reported: {exc}", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            job = json.loads(body) if body else {}
        except ValueError:
            job = {}
        steps = int(job.get("steps", 5)) if isinstance(job, dict) else 5
        seconds = float(job.get("seconds", 1.0)) if isinstance(job, dict) else 1.0
        request_id = self.headers["X-Cortex-Request-ID"]
        for step in range(1, steps + 1):
            time.sleep(seconds)  # the work
            report(request_id, {"step": step, "of": steps})
        answer = json.dumps({"steps": steps}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("CORTEX_PORT", "8080"))), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
