"""A user server for the hello-world API, written with the standard library only.

It listens on $CORTEX_PORT (8080 on Kubernetes), answers POST / with JSON and GET /healthz with 200.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body.decode("utf-8", errors="replace")
        request_id = self.headers["X-Cortex-Request-ID"]
        result = {"message": "hello from cortex-async", "request_id": request_id, "payload": payload}
        answer = json.dumps(result).encode()
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
