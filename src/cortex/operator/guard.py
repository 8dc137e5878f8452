"""The operator's token check: every route but ``/healthz``, ``/metrics`` and ``/status`` needs a Bearer token.

``/status`` is the status page's HTML, which holds no data: its script fetches the JSON under
``/status/...`` with the token the page was opened with (``/status#token=...``).

A second, read-only token may be given: it passes ``GET`` and ``HEAD`` only. On Kubernetes it is the
one the API pods find in their ``cli.yaml``, so a replica can look an API up (chaining) but never deploy
or delete one.

The tokens are kept as their digests and compared in constant time (:func:`cortex.auth.matches`).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from cortex.auth import bearer, key_digest, matches

#: what the read-only token may do
READ_METHODS = frozenset({"GET", "HEAD"})
#: what anyone may read: liveness, Prometheus scrapes, and the status page's (empty) HTML
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/status"})


class TokenGuard:
    """ASGI middleware answering 401 (no token) or 403 (a wrong one) before the operator's routes."""

    def __init__(self, app: ASGIApp, *, token: str, read_token: str | None = None) -> None:
        self.app = app
        self._digests = (key_digest(token),)
        self._read_digests = (key_digest(read_token),) if read_token is not None else ()

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
        reader = token is not None and bool(self._read_digests) and matches(token, self._read_digests)
        if reader and scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        if reader:
            status, extra = 403, []
            message = (
                f"the cortex operator refused {scope['method']} {scope['path']}: this token may only read (it is the"
                " one API replicas get); use the operator token of `cortex cluster up --operator-token`"
            )
        elif token is None:
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
