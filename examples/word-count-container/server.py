"""A word-count server that knows nothing of cortex-async: it listens on port 8080, as in any image.

POST / with text answers ``{"words": N, "top": [[word, count], ...], "replica": <hostname>}``; every
answer is also appended to /mnt/counts.jsonl, the replica's shared folder. GET /healthz answers 200.
"""

from __future__ import annotations

import collections
import json
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT = 8080
MNT = Path("/mnt")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", errors="replace")
        words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
        counts = collections.Counter(word for word in words if word)
        answer = {"words": sum(counts.values()), "top": counts.most_common(3), "replica": socket.gethostname()}
        with (MNT / "counts.jsonl").open("a") as log:
            log.write(json.dumps(answer) + "\n")
        self._send(200, json.dumps(answer).encode(), "application/json")

    def do_GET(self) -> None:
        self._send(200, b"ok", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 in a container has no default SIGTERM action
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
