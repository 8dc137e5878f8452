"""The upstream API: submits its text to `shout` through the gateway, waits for the result, returns both.

Plain HTTP with the standard library, exactly as on Cortex: POST $CORTEX_GATEWAY_URL/<api>, then poll
GET $CORTEX_GATEWAY_URL/<api>/<id>. (`cortex.client().submit(...)` and `.result(...)` do the same.)
When the cluster requires API keys, the runtime gives each replica one in $CORTEX_API_KEY: send it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GATEWAY = os.environ["CORTEX_GATEWAY_URL"]
AUTH = {"Authorization": f"Bearer {os.environ['CORTEX_API_KEY']}"} if os.environ.get("CORTEX_API_KEY") else {}


def call(api: str, payload: object, timeout: float = 60.0) -> object:
    request = urllib.request.Request(
        f"{GATEWAY}/{api}", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **AUTH}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        request_id = json.load(response)["id"]
    deadline, delay = time.monotonic() + timeout, 0.05
    while time.monotonic() < deadline:
        poll = urllib.request.Request(f"{GATEWAY}/{api}/{request_id}", headers=AUTH)
        with urllib.request.urlopen(poll, timeout=10) as response:
            status = json.load(response)
        if status["status"] == "completed":
            return status["result"]
        if status["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"{api} request {request_id} {status['status']}: {status.get('error')}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise TimeoutError(f"{api} request {request_id} did not finish within {timeout}s")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        downstream = call("shout", {"text": payload.get("text", "")})
        body = json.dumps({"original": payload.get("text"), "from_shout": downstream}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ["CORTEX_PORT"])), Handler).serve_forever()
