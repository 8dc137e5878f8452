"""A request's record as JSON, derived from the fields :mod:`cortex.recordfields` declares shown.

The body of ``GET /<endpoint>/<id>``, and what webhooks deliver: Cortex's fields (``id``,
``status``, ``result``, ``timestamp``) first, then this project's extensions. It lives below the
gateway and the webhooks, which both serve it; the OpenAPI document's ``Request`` schema comes from
the same declaration (:func:`answer_schema`).

Rendering is the hot path of polling: the declaration is turned once, at import, into a plan of
getters, and each answer is two ``json.dumps`` around the stored ``result`` bytes (spliced, never
re-parsed).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from cortex.recordfields import ANSWER, ANSWER_ORDER, Render, Shown
from cortex.requests import RequestRecord, Status, rfc3339

#: the same timestamps are formatted again at every poll of a request: keep the recent ones
_timestamp = functools.lru_cache(maxsize=4096)(rfc3339)


def _seconds(ts: float) -> str:
    return _timestamp(ts, millis=False)


def _error(error: Any) -> dict[str, str]:
    return {"kind": error.kind, "message": error.message}


_CONVERT: dict[Render, Callable[[Any], Any] | None] = {
    Render.VALUE: None,
    Render.TIMESTAMP: _timestamp,
    Render.SECONDS: _seconds,
    Render.ERROR: _error,
    Render.JSON_BYTES: None,
}

#: (key, getter, conversion or None, shown even when unset)
_Step = tuple[str, Callable[[RequestRecord], Any], Callable[[Any], Any] | None, bool]
_Raw = tuple[str, Callable[[RequestRecord], Any]]


def _plan(answer: Sequence[Shown], completed: bool) -> tuple[tuple[_Step, ...], _Raw | None, tuple[_Step, ...]]:
    """The steps before the spliced JSON bytes, those bytes' (key, getter), and the steps after."""
    head: list[_Step] = []
    tail: list[_Step] = []
    raw: _Raw | None = None
    for shown in answer:
        getter = operator.attrgetter(shown.attr)
        if shown.render is Render.JSON_BYTES:
            if raw is not None or shown.always:
                raise ValueError(f"answer field {shown.key}: one optional spliced JSON field at most")
            raw = (shown.key, getter)
        elif completed or not shown.completed_only:
            (tail if raw is not None else head).append((shown.key, getter, _CONVERT[shown.render], shown.always))
    if not completed or raw is None:
        return (*head, *tail), None, ()
    return tuple(head), raw, tuple(tail)


def _values(steps: tuple[_Step, ...], record: RequestRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, getter, convert, always in steps:
        value = getter(record)
        if value is not None:
            out[key] = value if convert is None else convert(value)
        elif always:
            out[key] = None
    return out


def renderer(answer: Sequence[Shown] = ANSWER) -> Callable[[RequestRecord], bytes]:
    """The function rendering a record's JSON as ``answer`` declares it (planned once, here)."""
    plans = {completed: _plan(answer, completed) for completed in (True, False)}
    head_c, raw_c, tail_c = plans[True]
    others = plans[False][0]

    def render(record: RequestRecord) -> bytes:
        if record.status != Status.COMPLETED:
            return json.dumps(_values(others, record), separators=(",", ":")).encode()
        first = _values(head_c, record)
        spliced: bytes | None = None if raw_c is None else raw_c[1](record)
        if spliced is None:
            return json.dumps(first | _values(tail_c, record), separators=(",", ":")).encode()
        assert raw_c is not None
        text = json.dumps(first, separators=(",", ":"))
        before = f'{text[:-1]},"{raw_c[0]}":' if first else f'{{"{raw_c[0]}":'
        rest = _values(tail_c, record)
        after = f",{json.dumps(rest, separators=(',', ':'))[1:]}" if rest else "}"
        return before.encode() + spliced + after.encode()

    return render


def added_values(record: RequestRecord, answer: Sequence[Shown] = ANSWER) -> dict[str, Any]:
    """The shown fields added since :data:`~cortex.recordfields.ANSWER_ORDER`, rendered as the answer does.

    What a view that lays out the long-served fields by hand (the status page) shows after them.
    """
    completed = record.status == Status.COMPLETED
    added = [shown for shown in answer if shown.key not in ANSWER_ORDER and shown.render is not Render.JSON_BYTES]
    steps = tuple(
        (shown.key, operator.attrgetter(shown.attr), _CONVERT[shown.render], shown.always)
        for shown in added
        if completed or not shown.completed_only
    )
    return _values(steps, record)


#: the JSON body of ``GET /<endpoint>/<id>`` (and of a webhook's POST)
render_record = renderer()


def answer_schema(answer: Sequence[Shown] = ANSWER) -> dict[str, Any]:
    """The OpenAPI (JSON Schema) object of a rendered record: each shown field's schema, those always shown required."""
    return {
        "type": "object",
        "required": [shown.key for shown in answer if shown.always],
        "properties": {shown.key: dict(shown.schema) for shown in answer},
    }
