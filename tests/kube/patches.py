"""Patch documents applied to JSON objects: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied (bad pointer, failed ``test``, unknown op): the API answers 422."""


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the RFC 7386 merge ``patch`` applied (neither argument is modified).

    Objects merge key by key, ``null`` removes a key, anything else (lists included) replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: it must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    """The container that holds the last token of ``tokens``, and that token."""
    if not tokens:
        raise PatchError("the operation cannot target the whole document")
    node = doc
    for token in tokens[:-1]:
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"path {path!r} does not exist") from None
    return node, tokens[-1]


def _index(container: list[Any], token: str, path: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(container)
    if not token.isdigit() or int(token) > len(container) - (0 if insert else 1):
        raise PatchError(f"path {path!r}: index {token!r} out of range")
    return int(token)


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise PatchError(f"path {path!r} does not exist") from None
    return node


def _remove(doc: Any, path: str) -> Any:
    container, token = _parent(doc, _pointer(path), path)
    if isinstance(container, list):
        return container.pop(_index(container, token, path, insert=False))
    if not isinstance(container, dict) or token not in container:
        raise PatchError(f"path {path!r} does not exist")
    return container.pop(token)


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    container, token = _parent(doc, tokens, path)
    if isinstance(container, list):
        if replace:
            container[_index(container, token, path, insert=False)] = value
        else:
            container.insert(_index(container, token, path, insert=True), value)
    elif isinstance(container, dict):
        if replace and token not in container:
            raise PatchError(f"path {path!r} does not exist")
        container[token] = value
    else:
        raise PatchError(f"path {path!r}: the parent is not an object or an array")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """``target`` with the RFC 6902 ``operations`` applied (add, remove, replace, move, copy, test).

    Raises:
        PatchError: the operations are malformed, or one of them cannot be applied.
    """
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise PatchError(f"malformed operation {operation!r}")
        op, path = operation.get("op"), operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"operation {op!r} on {path!r} needs a value")
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation["value"]))
        elif op == "replace":
            doc = _add(doc, path, copy.deepcopy(operation["value"]), replace=True)
        elif op == "remove":
            _remove(doc, path)
        elif op in ("move", "copy"):
            source = operation.get("from", "")
            value = _remove(doc, source) if op == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value)
        elif op == "test":
            if _get(doc, path) != operation["value"]:
                raise PatchError(f"test operation failed at {path!r}")
        else:
            raise PatchError(f"unknown operation {op!r}")
    return doc
