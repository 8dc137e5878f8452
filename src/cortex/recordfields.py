"""The fields of a stored request record, declared once: every backend maps its columns or hash fields from here.

Adding a field to the record is one :class:`Field` here (and the attribute on
:class:`~cortex.requests.RequestRecord`), plus one migration for each SQL backend
(:data:`cortex.sqlitetables.MIGRATIONS`, :data:`cortex.store.postgres.MIGRATIONS`); Redis hashes take
any field. ``tests/backends/test_migrations.py`` fails while a declared column has no migration.

A field given ``shown=(Shown(schema),)`` is also in the record's JSON (the GET answer and webhooks,
:mod:`cortex.recordanswer`), in the OpenAPI document's ``Request`` schema and in the status page's
request view, all derived from :data:`ANSWER`; ``tests/test_recordanswer.py`` checks that they agree.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

from cortex.requests import ErrorKind, RequestError, RequestRecord, Status


class Kind(enum.Enum):
    """How a field is stored: its SQL types and how Redis's bytes decode."""

    TEXT = ("TEXT", "TEXT")
    REAL = ("REAL", "DOUBLE PRECISION")
    INTEGER = ("INTEGER", "INTEGER")
    BYTES = ("BLOB", "BYTEA")
    JSON = ("TEXT", "TEXT", "json")  #: JSON text (its own member: a bare ("TEXT", "TEXT") would alias TEXT)

    @property
    def sqlite(self) -> str:
        """The column type in SQLite."""
        return str(self.value[0])

    @property
    def postgres(self) -> str:
        """The column type in PostgreSQL."""
        return str(self.value[1])


class Part(enum.Enum):
    """Which reads return a field."""

    LIGHT = "light"  #: every read of the record (a status read, a listing)
    FULL = "full"  #: only the reads that start the request (payload, headers): gone at a terminal status
    STORED = "stored"  #: written and used by the store itself (idempotency), never read into a record


class Render(enum.Enum):
    """How a shown field's value becomes JSON."""

    VALUE = "value"  #: as it is (a string, a number, a JSON object)
    TIMESTAMP = "timestamp"  #: a Unix time as RFC 3339 UTC with milliseconds
    SECONDS = "seconds"  #: a Unix time as RFC 3339 UTC, whole seconds (Cortex's ``timestamp``)
    ERROR = "error"  #: a :class:`~cortex.requests.RequestError` as ``{"kind", "message"}``
    JSON_BYTES = "json_bytes"  #: stored JSON bytes, spliced into the answer as they are (never re-parsed)


@dataclasses.dataclass(frozen=True, slots=True)
class Shown:
    """How a field appears in the record's JSON (the GET answer, webhooks) and its OpenAPI schema."""

    schema: Mapping[str, Any]  #: its JSON Schema in the OpenAPI document
    key: str = ""  #: its key in the JSON; the field's name when empty
    attr: str = ""  #: the :class:`~cortex.requests.RequestRecord` attribute it shows; the field's name when empty
    render: Render = Render.VALUE
    always: bool = False  #: shown even when unset (and required in the schema); else only when set
    completed_only: bool = False  #: shown only while the request is ``completed``


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One field of the stored record."""

    name: str
    kind: Kind
    part: Part = Part.LIGHT
    required: bool = False
    #: how it appears in the record's JSON: nothing (not shown), or one or more keys
    shown: tuple[Shown, ...] = ()


_TIMESTAMP = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}

FIELDS: tuple[Field, ...] = (
    Field("id", Kind.TEXT, required=True, shown=(Shown({"$ref": "#/components/schemas/RequestId"}, always=True),)),
    Field("api", Kind.TEXT, required=True),
    Field(
        "status",
        Kind.TEXT,
        required=True,
        shown=(Shown({"type": "string", "enum": [status.value for status in Status]}, always=True),),
    ),
    Field("created_at", Kind.REAL, required=True, shown=(Shown(_TIMESTAMP, render=Render.TIMESTAMP, always=True),)),
    Field(
        "expires_at",
        Kind.REAL,
        required=True,
        shown=(
            Shown(
                {**_TIMESTAMP, "description": "When the record and its result are removed."},
                render=Render.TIMESTAMP,
                always=True,
            ),
        ),
    ),
    Field("attempts", Kind.INTEGER, required=True, shown=(Shown({"type": "integer", "minimum": 0}, always=True),)),
    Field("started_at", Kind.REAL, shown=(Shown(_TIMESTAMP, render=Render.TIMESTAMP),)),
    Field(
        "finished_at",
        Kind.REAL,
        shown=(
            Shown(_TIMESTAMP, render=Render.TIMESTAMP),
            Shown(
                {**_TIMESTAMP, "description": "When it completed (RFC 3339, UTC, seconds); when completed."},
                key="timestamp",
                render=Render.SECONDS,
                completed_only=True,
            ),
        ),
    ),
    Field(
        "result",
        Kind.BYTES,
        shown=(
            Shown(
                {"description": "Exactly the JSON the user server answered (any JSON value); when completed."},
                render=Render.JSON_BYTES,
                completed_only=True,
            ),
        ),
    ),
    Field(
        "error_kind",
        Kind.TEXT,
        shown=(
            Shown(
                {
                    "type": "object",
                    "description": "Why it failed; when failed.",
                    "required": ["kind", "message"],
                    "properties": {
                        "kind": {"type": "string", "enum": [kind.value for kind in ErrorKind]},
                        "message": {"type": "string"},
                    },
                },
                key="error",
                attr="error",
                render=Render.ERROR,
            ),
        ),
    ),
    Field("error_message", Kind.TEXT),  # shown in "error", with error_kind
    Field("webhook_url", Kind.TEXT),
    Field(
        "webhook",
        Kind.JSON,
        shown=(
            Shown(
                {
                    "type": "object",
                    "description": "The delivery of the request's webhook, once one was tried.",
                    "additionalProperties": True,
                }
            ),
        ),
    ),
    Field("headers", Kind.JSON, Part.FULL),
    Field("payload", Kind.BYTES, Part.FULL),
    Field("payload_ref", Kind.TEXT, Part.FULL),
    Field("idempotency_key", Kind.TEXT, Part.STORED),
    Field("body_digest", Kind.TEXT, Part.STORED),
    Field(
        "priority",
        Kind.INTEGER,
        shown=(
            Shown(
                {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 9,
                    "description": "The X-Cortex-Priority it was submitted with; when it was sent.",
                }
            ),
        ),
    ),
    Field(
        "progress",
        Kind.JSON,
        shown=(
            Shown(
                {
                    "description": "The latest progress its user server reported (POST $CORTEX_DEQUEUER_URL/progress):"
                    " any JSON value, at most 4 KiB; once one was reported. Kept once it ends."
                }
            ),
        ),
    ),
    Field(
        "progress_at",
        Kind.REAL,
        shown=(Shown({**_TIMESTAMP, "description": "When that progress was stored."}, render=Render.TIMESTAMP),),
    ),
)
BY_NAME = {field.name: field for field in FIELDS}
#: what a status read returns, in this order
LIGHT: tuple[str, ...] = tuple(field.name for field in FIELDS if field.part is Part.LIGHT)
#: what the start of a request returns: the light fields, then the payload and headers
FULL: tuple[str, ...] = LIGHT + tuple(field.name for field in FIELDS if field.part is Part.FULL)

#: the record's JSON keys in the order they have always been answered: Cortex's four, then the
#: extensions. A shown key not named here (a field added since) comes after these, in declaration order.
ANSWER_ORDER: tuple[str, ...] = (
    "id",
    "status",
    "result",
    "timestamp",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "expires_at",
    "attempts",
    "webhook",
)


def answer_of(fields: tuple[Field, ...]) -> tuple[Shown, ...]:
    """What the record's JSON shows of ``fields``, in answer order (keys and attributes filled in)."""
    shown = [
        dataclasses.replace(each, key=each.key or field.name, attr=each.attr or field.name)
        for field in fields
        for each in field.shown
    ]
    keys = [each.key for each in shown]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key of the record's JSON is shown twice: {keys}")
    rank = {key: index for index, key in enumerate(ANSWER_ORDER)}
    return tuple(sorted(shown, key=lambda each: rank.get(each.key, len(rank))))


#: the record's JSON (:mod:`cortex.recordanswer`), in order
ANSWER = answer_of(FIELDS)


#: the fields read into a record's attribute of the same name as they are (JSON text decoded)
_PLAIN = tuple(
    field.name
    for field in FIELDS
    if field.part is not Part.STORED
    and field.name not in ("status", "attempts", "error_kind", "error_message", "headers")
)
_PLAIN_JSON = tuple(name for name in _PLAIN if BY_NAME[name].kind is Kind.JSON)


def record_from(values: Mapping[str, Any]) -> RequestRecord:
    """The record of ``values`` (field name -> value as the backend typed it; missing fields are unset)."""
    get = values.get
    plain: dict[str, Any] = {name: get(name) for name in _PLAIN}
    for name in _PLAIN_JSON:
        if plain[name] is not None:
            plain[name] = json.loads(plain[name])
    kind, headers = values.get("error_kind"), values.get("headers")
    return RequestRecord(
        status=Status(values["status"]),
        attempts=values.get("attempts") or 0,
        error=None if kind is None else RequestError(kind=kind, message=values.get("error_message") or ""),
        headers=tuple((k, v) for k, v in json.loads(headers)) if headers else (),
        **plain,
    )


def decoded(name: str, raw: bytes | None) -> Any:
    """The value of field ``name`` from the bytes Redis keeps (None stays None)."""
    if raw is None:
        return None
    kind = BY_NAME[name].kind
    if kind is Kind.BYTES:
        return raw
    if kind is Kind.REAL:
        return float(raw)
    if kind is Kind.INTEGER:
        return int(raw)
    return raw.decode()


def columns(names: tuple[str, ...]) -> str:
    """``a, b, c``: a column list for SQL."""
    return ", ".join(names)
