"""The baseline of scenario (a): bare Starlette on uvicorn answering the submit POST from memory.

``POST /api`` reads the body, keeps it in a dict under a fresh id and answers ``{"id": ...}``: what
the gateway does, without storing anything durably. Run with
``uvicorn bench.bare_server:app --loop uvloop --http httptools --no-access-log``.
"""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

#: bodies kept in memory, dropped every 100,000 so a long run does not grow without bound
_BODIES: dict[str, bytes] = {}


async def submit(request: Request) -> JSONResponse:
    body = await request.body()
    if len(_BODIES) >= 100_000:
        _BODIES.clear()
    request_id = uuid.uuid4().hex
    _BODIES[request_id] = body
    return JSONResponse({"id": request_id})


app = Starlette(routes=[Route("/api", submit, methods=["POST"])])
