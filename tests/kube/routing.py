"""Where a request goes (resource, namespace, name, subresource), and the ``Status`` objects failures answer with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from tests.kube.resources import ResourceType, by_route

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """A failure ``Status`` object, as the API server sends it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }


class ApiFailure(Exception):
    """Answer the request with a failure ``Status``."""

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.body = status(code, message, reason)

    def response(self) -> JSONResponse:
        """The HTTP answer."""
        return JSONResponse(self.body, status_code=self.body["code"])


@dataclass(frozen=True)
class Route:
    """What a request's path names: a resource, maybe a namespace (None: all, or cluster-scoped), name, subresource."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None

    @property
    def ns(self) -> str:
        """The namespace, "" when none."""
        return self.namespace or ""


def parse_route(path: str) -> Route:
    """The :class:`Route` of a request path; ApiFailure 404 for paths that name nothing the emulator serves."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiFailure(404, f"the server could not find the requested resource ({path})")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    resource = by_route(group, version, rest[0]) if 1 <= len(rest) <= 3 else None
    if (
        resource is None
        or (namespace is not None and not resource.namespaced)
        or (resource.namespaced and namespace is None and len(rest) > 1)
        or (len(rest) == 3 and rest[2] not in resource.subresources)
    ):
        raise ApiFailure(404, f"the server could not find the requested resource ({path})")
    return Route(resource, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)
