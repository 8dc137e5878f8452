"""A user server for the runtime tests: stdlib only, started by the local runtime as a real process.

``python user_server.py [name] [args...]`` serves on ``$CORTEX_PORT``: ``POST /`` answers JSON
``{"pid", "replica", "argv", "env", "mnt_files", "body"}`` (``env``: the ``CORTEX_*`` and ``TEST_*``
variables), after sleeping N seconds if the body is ``sleep:N``, or after posting the JSON ``J`` as its
progress to ``$CORTEX_DEQUEUER_URL/progress`` if the body is ``progress:J`` (then with ``"progress_status"``,
the status that answered); ``GET /healthz`` answers 200. On start
it writes ``$CORTEX_MNT/<name>.started``. ``--idle`` (last argument) writes the marker and only sleeps.
If ``$TEST_TRACE_DIR`` is set, each POST first writes ``<dir>/<request id>.<replica id>``; if
``$TEST_SIGTERM_FILE`` is set, SIGTERM writes the time there before exiting.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    target = os.environ.get("TEST_SIGTERM_FILE")
    if target:
        Path(target).write_text(repr(time.time()))
    os._exit(0)


def report(request_id: str, progress: str) -> int:
    """Post ``progress`` for the request being run, as a user server would; the status that answered."""
    url = os.environ["CORTEX_DEQUEUER_URL"] + "/progress"
    headers = {"X-Cortex-Request-ID": request_id, "Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, progress.encode(), headers), timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._send(200, b"ok", "text/plain")

    def do_POST(self) -> None:
        body = self._body().decode("utf-8")
        request_id = self.headers.get("X-Cortex-Request-ID", "")
        trace = os.environ.get("TEST_TRACE_DIR")
        if trace:
            Path(trace, f"{request_id}.{os.environ['CORTEX_REPLICA_ID']}").touch()
        print(f"handling {request_id} body={body}", file=sys.stderr, flush=True)
        if body.startswith("sleep:"):
            time.sleep(float(body.removeprefix("sleep:")))
        reported = report(request_id, body.removeprefix("progress:")) if body.startswith("progress:") else None
        answer: dict[str, object] = {
            "pid": os.getpid(),
            "replica": os.environ["CORTEX_REPLICA_ID"],
            "argv": sys.argv[1:],
            "env": {k: v for k, v in os.environ.items() if k.startswith(("CORTEX_", "TEST_"))},
            "mnt_files": sorted(os.listdir(os.environ["CORTEX_MNT"])),
            "body": body,
        }
        if reported is not None:
            answer["progress_status"] = reported
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    name = sys.argv[1] if len(sys.argv) > 1 else "api"
    Path(os.environ["CORTEX_MNT"], f"{name}.started").touch()
    if sys.argv[-1] == "--idle":
        print(f"{name} idle", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    # in a container the server must listen where the pod's published port arrives, not on its loopback
    server = ThreadingHTTPServer((os.environ.get("TEST_BIND", "127.0.0.1"), int(os.environ["CORTEX_PORT"])), Handler)
    server.daemon_threads = True
    print(f"{name} listening on {server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
