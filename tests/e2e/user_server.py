"""A user server written with the standard library only, as a Cortex user might.

Listens on ``CORTEX_PORT`` (or argv[1]). ``POST /`` answers JSON with the request id it was given,
the body length and the content type; a JSON body ``{"sleep": s}`` makes it wait ``s`` seconds
first. ``GET /healthz`` answers 200.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is not None:
            body = self.rfile.read(int(length))
        else:  # chunked
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "sleep" in data:
            time.sleep(float(data["sleep"]))
        answer = json.dumps(
            {
                "id": self.headers.get("X-Cortex-Request-ID"),
                "length": len(body),
                "content_type": self.headers.get("Content-Type"),
                "pid": os.getpid(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ["CORTEX_PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
