"""The authorization attributes kube-apiserver checks a request against: (API group, resource, verb).

RBAC grants these, so recording them for every request a piece of code makes is how a test derives the
least Role that code needs (:attr:`tests.kube.emulator.Emulator.verbs`).
"""

from __future__ import annotations

from tests.kube.routing import Route

#: (API group, resource or ``resource/subresource``, verb)
Attribute = tuple[str, str, str]


def attributes(method: str, route: Route, *, watch: bool, creates: bool) -> list[Attribute]:
    """What RBAC must allow for ``method`` on ``route``.

    ``watch`` is a GET with ``watch=true``; ``creates`` a server-side apply of an object that does not
    exist yet, which the API server authorizes as ``create`` too.
    """
    resource = route.resource.plural + (f"/{route.sub}" if route.sub else "")
    if method == "GET":
        verb = "get" if route.name is not None else "watch" if watch else "list"
    elif method == "DELETE":
        verb = "delete" if route.name is not None else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    found = [(route.resource.group, resource, verb)]
    if creates:
        found.append((route.resource.group, resource, "create"))
    return found
