"""The record's JSON (the GET answer, webhooks) and its OpenAPI schema both come from the declaration.

Adding a shown field to :data:`cortex.recordfields.FIELDS` puts it in both with no other edit; the
answer stays byte for byte what it has been (Cortex's four fields first, ``result`` spliced as stored).
"""

from __future__ import annotations

import dataclasses
import json

from cortex.gateway.openapi import openapi_document
from cortex.operator.status_page import detail
from cortex.recordanswer import added_values, answer_schema, render_record, renderer
from cortex.recordfields import ANSWER, FIELDS, Field, Kind, Render, Shown, answer_of
from cortex.requests import RequestError, RequestRecord, Status

T = 1_700_000_000.25


def _record(status: Status, **changes: object) -> RequestRecord:
    return dataclasses.replace(
        RequestRecord(id="01hqz0000000000000000000ab", api="api", status=status, created_at=T, expires_at=T + 600),
        **changes,  # type: ignore[arg-type]
    )


def test_the_answer_is_byte_for_byte_what_it_was() -> None:
    queued = _record(Status.IN_QUEUE)
    assert render_record(queued) == (
        b'{"id":"01hqz0000000000000000000ab","status":"in_queue","created_at":"2023-11-14T22:13:20.250Z",'
        b'"expires_at":"2023-11-14T22:23:20.250Z","attempts":0}'
    )
    completed = _record(
        Status.COMPLETED,
        attempts=1,
        started_at=T + 1,
        finished_at=T + 2,
        result=b'{"b": 1,  "a": [2]}',
        webhook={"status": "delivered", "attempts": 1, "last_error": None},
    )
    assert render_record(completed) == (
        b'{"id":"01hqz0000000000000000000ab","status":"completed","result":{"b": 1,  "a": [2]},'
        b'"timestamp":"2023-11-14T22:13:22Z","created_at":"2023-11-14T22:13:20.250Z",'
        b'"started_at":"2023-11-14T22:13:21.250Z","finished_at":"2023-11-14T22:13:22.250Z",'
        b'"expires_at":"2023-11-14T22:23:20.250Z","attempts":1,'
        b'"webhook":{"status":"delivered","attempts":1,"last_error":null}}'
    )
    failed = _record(Status.FAILED, attempts=2, finished_at=T + 3, error=RequestError("timeout", 'too "slow"'))
    assert render_record(failed) == (
        b'{"id":"01hqz0000000000000000000ab","status":"failed","error":{"kind":"timeout","message":"too \\"slow\\""},'
        b'"created_at":"2023-11-14T22:13:20.250Z","finished_at":"2023-11-14T22:13:23.250Z",'
        b'"expires_at":"2023-11-14T22:23:20.250Z","attempts":2}'
    )


def test_every_declared_answer_field_is_rendered_and_in_the_openapi_schema() -> None:
    everything = _record(
        Status.COMPLETED,
        attempts=1,
        started_at=T + 1,
        finished_at=T + 2,
        result=b"[1]",
        error=RequestError("internal", "x"),  # never together with a result, but every key shows
        webhook={"status": "pending"},
        priority=9,
        progress={"step": 2},
        progress_at=T + 1.5,
    )
    keys = [shown.key for shown in ANSWER]
    assert list(json.loads(render_record(everything))) == keys
    schema = openapi_document()["components"]["schemas"]["Request"]
    assert schema == answer_schema()
    assert list(schema["properties"]) == keys
    assert schema["required"] == ["id", "status", "created_at", "expires_at", "attempts"]


@dataclasses.dataclass(frozen=True, slots=True)
class _WithWeight(RequestRecord):
    weight: int | None = None


def test_a_field_added_to_the_declaration_is_answered_and_documented_with_no_other_edit() -> None:
    added = Field("weight", Kind.INTEGER, shown=(Shown({"type": "integer", "minimum": 0}),))
    answer = answer_of((*FIELDS, added))
    render = renderer(answer)

    record = _WithWeight(**dataclasses.asdict(_record(Status.COMPLETED, result=b"{}")), weight=7)
    shown = json.loads(render(record))
    assert shown["weight"] == 7 and list(shown)[-1] == "weight"  # new keys follow the served ones
    assert render(dataclasses.replace(record, weight=None)) == render_record(record)  # only when set
    schema = answer_schema(answer)
    assert schema["properties"]["weight"] == {"type": "integer", "minimum": 0}
    assert "weight" not in schema["required"]


def test_a_timestamp_field_renders_as_rfc3339_and_always_shows() -> None:
    added = Field(
        "deadline",
        Kind.REAL,
        shown=(Shown({"type": "string", "format": "date-time"}, render=Render.TIMESTAMP, always=True),),
    )
    answer = answer_of((*FIELDS, added))

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithDeadline(RequestRecord):
        deadline: float | None = None

    base = dataclasses.asdict(_record(Status.IN_QUEUE))
    assert json.loads(renderer(answer)(WithDeadline(**base, deadline=T)))["deadline"] == "2023-11-14T22:13:20.250Z"
    assert json.loads(renderer(answer)(WithDeadline(**base)))["deadline"] is None
    assert "deadline" in answer_schema(answer)["required"]


def test_the_status_page_lists_a_field_added_to_the_declaration() -> None:
    added = Field("weight", Kind.INTEGER, shown=(Shown({"type": "integer"}),))
    answer = answer_of((*FIELDS, added))
    record = _WithWeight(**dataclasses.asdict(_record(Status.IN_QUEUE)), weight=3)
    assert detail(record, answer)["more"] == {"weight": 3}
    assert detail(record)["more"] == {}  # the fields served so far are laid out by the page itself
    assert added_values(dataclasses.replace(record, weight=None), answer) == {}
