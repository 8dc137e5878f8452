"""A no-op user server from the standard library that writes its answer's head and body apart.

Python's ``http.server`` with HTTP/1.1 sends the head in one write and the body in another: on a
kept-alive connection Nagle's algorithm holds the body until the head is acknowledged, which the
client's delayed ACK puts off by about 40 ms (issue 19, point 6). ``bench/keepalive.py`` runs it
behind a dequeuer with and without the remedy. It listens on ``$CORTEX_PORT``; ``GET`` answers 200.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TwoWrites(BaseHTTPRequestHandler):
    """``POST`` answers ``{}``; the head and the body leave in two writes."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()  # unbuffered: the head goes out now...
        self.wfile.write(b"{}")  # ...and the body in a write of its own

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("CORTEX_PORT", "8080"))), TwoWrites).serve_forever()
