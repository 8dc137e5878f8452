"""The fields of a stored request record, declared once: every backend maps its columns or hash fields from here.

Adding a field to the record is one :class:`Field` here (and the attribute on
:class:`~cortex.requests.RequestRecord`), plus one migration for each SQL backend
(:data:`cortex.sqlitetables.MIGRATIONS`, :data:`cortex.store.postgres.MIGRATIONS`); Redis hashes take
any field. ``tests/backends/test_migrations.py`` fails while a declared column has no migration.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

from cortex.requests import RequestError, RequestRecord, Status


class Kind(enum.Enum):
    """How a field is stored: its SQL types and how Redis's bytes decode."""

    TEXT = ("TEXT", "TEXT")
    REAL = ("REAL", "DOUBLE PRECISION")
    INTEGER = ("INTEGER", "INTEGER")
    BYTES = ("BLOB", "BYTEA")
    JSON = ("TEXT", "TEXT")  #: JSON text

    @property
    def sqlite(self) -> str:
        """The column type in SQLite."""
        return self.value[0]

    @property
    def postgres(self) -> str:
        """The column type in PostgreSQL."""
        return self.value[1]


class Part(enum.Enum):
    """Which reads return a field."""

    LIGHT = "light"  #: every read of the record (a status read, a listing)
    FULL = "full"  #: only the reads that start the request (payload, headers): gone at a terminal status
    STORED = "stored"  #: written and used by the store itself (idempotency), never read into a record


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One field of the stored record."""

    name: str
    kind: Kind
    part: Part = Part.LIGHT
    required: bool = False


FIELDS: tuple[Field, ...] = (
    Field("id", Kind.TEXT, required=True),
    Field("api", Kind.TEXT, required=True),
    Field("status", Kind.TEXT, required=True),
    Field("created_at", Kind.REAL, required=True),
    Field("expires_at", Kind.REAL, required=True),
    Field("attempts", Kind.INTEGER, required=True),
    Field("started_at", Kind.REAL),
    Field("finished_at", Kind.REAL),
    Field("result", Kind.BYTES),
    Field("error_kind", Kind.TEXT),
    Field("error_message", Kind.TEXT),
    Field("webhook_url", Kind.TEXT),
    Field("webhook", Kind.JSON),
    Field("headers", Kind.JSON, Part.FULL),
    Field("payload", Kind.BYTES, Part.FULL),
    Field("payload_ref", Kind.TEXT, Part.FULL),
    Field("idempotency_key", Kind.TEXT, Part.STORED),
    Field("body_digest", Kind.TEXT, Part.STORED),
)
BY_NAME = {field.name: field for field in FIELDS}
#: what a status read returns, in this order
LIGHT: tuple[str, ...] = tuple(field.name for field in FIELDS if field.part is Part.LIGHT)
#: what the start of a request returns: the light fields, then the payload and headers
FULL: tuple[str, ...] = LIGHT + tuple(field.name for field in FIELDS if field.part is Part.FULL)


def record_from(values: Mapping[str, Any]) -> RequestRecord:
    """The record of ``values`` (field name -> value as the backend typed it; missing fields are unset)."""
    kind, webhook, headers = values.get("error_kind"), values.get("webhook"), values.get("headers")
    return RequestRecord(
        id=values["id"],
        api=values["api"],
        status=Status(values["status"]),
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        attempts=values.get("attempts") or 0,
        started_at=values.get("started_at"),
        finished_at=values.get("finished_at"),
        result=values.get("result"),
        error=None if kind is None else RequestError(kind=kind, message=values.get("error_message") or ""),
        webhook_url=values.get("webhook_url"),
        webhook=None if webhook is None else json.loads(webhook),
        headers=tuple((k, v) for k, v in json.loads(headers)) if headers else (),
        payload=values.get("payload"),
        payload_ref=values.get("payload_ref"),
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
