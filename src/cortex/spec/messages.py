"""Turn pydantic's validation errors into ``(field path, plain message)`` pairs.

Paths use the YAML names (``pod.containers[0].name``); messages say what was expected and what
was given, and unknown keys list the keys that are allowed where they appeared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from cortex.spec.fields import show

_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def describe_errors(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Describe each error of ``exc``, raised while validating ``root``.

    Args:
        exc: the error pydantic raised.
        root: the model that was being validated, used to list the keys allowed at a location.

    Returns:
        ``(path, message)`` pairs in pydantic's order; ``path`` is ``""`` for the object itself.
    """
    described = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == "spec":
            loc += tuple(ctx.get("path", ()))
        path = format_path(loc[:-1] if error["type"] == "invalid_key" else loc)
        described.append((path, _message(error, loc, root)))
    return described


def format_path(loc: Sequence[str | int]) -> str:
    """``("pod", "containers", 0, "name")`` -> ``"pod.containers[0].name"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: ErrorDetails, loc: tuple[str | int, ...], root: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "spec":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return "field required"
    if kind in ("extra_forbidden", "invalid_key"):
        # A non-string key (YAML `1: x`) can't be a field either; name it, as the path can't.
        unknown = "unknown field" if kind == "extra_forbidden" else f"unknown field {show(loc[-1])}"
        allowed = _allowed_keys(root, loc[:-1])
        return f"{unknown} (allowed: {', '.join(allowed)})" if allowed else unknown
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]} (got {show(value)})"
    if kind == "finite_number":
        return f"must be a finite number (got {show(value)})"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # the model's 1.0 is the user's 1
        return f"must be {_BOUNDS[kind]} {bound} (got {show(value)})"
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    if kind in ("too_long", "string_too_long"):
        return f"must have at most {ctx.get('max_length')} {'characters' if kind == 'string_too_long' else 'items'}"
    return str(error["msg"])


def _allowed_keys(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The YAML keys of the model found at ``loc`` below ``root`` ([] if there is none)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue  # a list index: the items are the model already reached
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as ``list[Container]`` or ``Probe | None``."""
    if get_origin(annotation) is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
