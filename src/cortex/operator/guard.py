"""The operator's token check: every route but ``/healthz``, ``/metrics`` and ``/status`` needs a Bearer token.

``/status`` is the status page's HTML, which holds no data: its script fetches the JSON under
``/status/...`` with the token the page was opened with (``/status#token=...``).

The token is kept as its digest and compared in constant time (:func:`cortex.auth.matches`).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from cortex.auth import bearer, key_digest, matches

#: what anyone may read: liveness, Prometheus scrapes, and the status page's (empty) HTML
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/status"})


class TokenGuard:
    """ASGI middleware answering 401 (no token) or 403 (a wrong one) before the operator's routes."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self._digests = (key_digest(token),)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        token = bearer(authorization)
        if token is not None and matches(token, self._digests):
            await self.app(scope, receive, send)
            return
        if token is None:
            status, extra = 401, [(b"www-authenticate", b'Bearer realm="cortex-operator"')]
            message = (
                "the cortex operator needs a token (Authorization: Bearer <token>): give it to this"
                " environment with `cortex env configure <env> --operator-token <token>`"
            )
        else:
            status, extra = 403, []
            message = (
                "the cortex operator refused the token: it is not the cluster's"
                " (see `cortex cluster up --operator-token`); fix it with `cortex env configure <env> --operator-token`"
            )
        body = json.dumps({"error": message, "kind": "unauthorized" if status == 401 else "forbidden"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
