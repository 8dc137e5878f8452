"""The API pods' read-only token: it looks APIs up (chaining needs that) but cannot deploy, refresh or delete."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cortex.operator.guard import TokenGuard

TOKEN = "operator-token-0123456789abcdef"
READ = "replica-token-0123456789abcdef"


async def answer(request: Request) -> JSONResponse:
    return JSONResponse({"ok": request.method})


def guarded(read_token: str | None) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD", "POST", "DELETE"])])
    transport = httpx.ASGITransport(app=TokenGuard(app, token=TOKEN, read_token=read_token))
    return httpx.AsyncClient(transport=transport, base_url="http://operator")


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/get/hello", READ, 200),
        ("GET", "/info", READ, 200),
        ("HEAD", "/get", READ, 200),
        ("POST", "/deploy", READ, 403),
        ("POST", "/refresh/hello", READ, 403),
        ("DELETE", "/delete/hello", READ, 403),
        ("POST", "/deploy", TOKEN, 200),
        ("DELETE", "/delete/hello", TOKEN, 200),
    ],
)
async def test_the_read_token_reads_and_only_reads(method: str, path: str, token: str, status: int) -> None:
    async with guarded(READ) as http:
        response = await http.request(method, path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    if status == 403:
        assert "this token may only read" in response.json()["error"]


async def test_without_a_read_token_configured_it_is_just_a_wrong_token() -> None:
    async with guarded(None) as http:
        response = await http.get("/get", headers={"Authorization": f"Bearer {READ}"})
    assert response.status_code == 403
    assert "refused the token" in response.json()["error"]
