"""The no-op user server: ``POST /`` answers ``{}`` at once (raw ASGI on uvicorn with uvloop and httptools).

It listens on ``$CORTEX_PORT``. With ``$BENCH_GATE`` set, ``GET /healthz`` fails (503) until that
file exists, and each probe leaves a ``<gate>.probed.<port>`` file behind: the harness loads the
queue while no replica may lease, then opens the gate for all of them at once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
PORT = int(os.environ.get("CORTEX_PORT", "8080"))
GATE = Path(os.environ["BENCH_GATE"]) if os.environ.get("BENCH_GATE") else None
_JSON = [(b"content-type", b"application/json"), (b"content-length", b"2")]
_EMPTY = [(b"content-length", b"0")]


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    status = 200
    if GATE is not None and not GATE.exists():
        GATE.with_name(f"{GATE.name}.probed.{PORT}").touch()
        status = 503
    await send({"type": "http.response.start", "status": status, "headers": _EMPTY})
    await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", lifespan="off",
        access_log=False, log_level="warning",
    )  # fmt: skip
