"""The operator's JSON error answers: one shape, ``{"error", "kind"}``, for every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cortex.errors import CortexError, NotFound, SpecError
from cortex.operator.service import Conflict

Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, kind: str, message: str) -> JSONResponse:
    """A JSON error answer."""
    return JSONResponse({"error": message, "kind": kind}, status_code=status)


def guarded(handler: Endpoint) -> Endpoint:
    """Turn cortex errors into JSON answers with the right status."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except SpecError as exc:
            return error(400, "spec", str(exc))
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Conflict as exc:
            return error(409, "conflict", str(exc))
        except CortexError as exc:
            return error(500, "internal", str(exc))

    return run
