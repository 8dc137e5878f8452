"""The HTTP side of the document pipeline: hands documents to the analyzer through $CORTEX_MNT."""

from __future__ import annotations

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MNT = Path(os.environ["CORTEX_MNT"])
INBOX, OUTBOX = MNT / "inbox", MNT / "outbox"
READY_AT = time.monotonic() + float(os.environ.get("LOAD_SECONDS", "0"))  # stands in for loading a model


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request_id = self.headers["X-Cortex-Request-ID"]
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        tmp = INBOX / f".{request_id}.tmp"
        tmp.write_bytes(text)
        tmp.rename(INBOX / f"{request_id}.txt")  # the analyzer never sees half a document
        report = OUTBOX / f"{request_id}.json"
        deadline = time.monotonic() + 60
        while not report.exists():
            if time.monotonic() > deadline:
                self._answer(504, b'{"error": "the analyzer did not answer"}')
                return
            time.sleep(0.02)
        self._answer(200, report.read_bytes())
        report.unlink()

    def do_GET(self) -> None:
        ready = self.path == "/healthz" and time.monotonic() >= READY_AT
        self._answer(200 if ready else 503, b"{}")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    INBOX.mkdir(parents=True, exist_ok=True)
    OUTBOX.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ["CORTEX_PORT"])), Handler).serve_forever()
