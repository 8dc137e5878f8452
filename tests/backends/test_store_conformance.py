"""The record store and catalog contracts; every backend passes them unchanged (blobs: test_blob_conformance)."""

from __future__ import annotations

import dataclasses

from cortex.backends import Backends
from cortex.requests import Duplicate, ErrorKind, NewRequest, Outcome, Status

T0 = 1_700_000_000.0


def new(rid: str = "r1", *, payload: bytes | None = b"{}", ref: str | None = None) -> NewRequest:
    return NewRequest(
        id=rid,
        api="api",
        created_at=T0,
        expires_at=T0 + 100,
        headers=(("Content-Type", "application/json"), ("X-A", "1"), ("X-A", "2")),
        payload=payload,
        payload_ref=ref,
    )


async def test_create_then_get_is_in_queue_without_payload(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new())
    rec = await rs.get("api", "r1", now=T0)
    assert rec is not None
    assert (rec.status, rec.attempts, rec.created_at, rec.expires_at) == (Status.IN_QUEUE, 0, T0, T0 + 100)
    assert rec.payload is None and rec.headers == ()
    assert await rs.get("other-api", "r1", now=T0) is None
    assert await rs.get("api", "nope", now=T0) is None


async def test_start_returns_payload_and_headers_in_order(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new(payload=b"\x00\xffbinary"))
    rec = await rs.start("api", "r1", attempts=1, now=T0 + 1)
    assert rec is not None
    assert rec.status == Status.IN_PROGRESS and rec.attempts == 1 and rec.started_at == T0 + 1
    assert rec.payload == b"\x00\xffbinary"
    assert rec.headers == (("Content-Type", "application/json"), ("X-A", "1"), ("X-A", "2"))
    again = await rs.start("api", "r1", attempts=2, now=T0 + 2)
    assert again is not None and again.attempts == 2


async def test_finish_keeps_result_bytes_and_drops_payload(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new(ref="blob-1"))
    await rs.start("api", "r1", attempts=1, now=T0 + 1)
    assert await rs.finish("api", "r1", Outcome.completed(b'[1, 2.50, "x"]'), now=T0 + 2)
    rec = await rs.get("api", "r1", now=T0 + 3)
    assert rec is not None
    assert rec.status == Status.COMPLETED and rec.result == b'[1, 2.50, "x"]' and rec.finished_at == T0 + 2
    assert rec.error is None


async def test_terminal_status_never_changes(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new())
    await rs.start("api", "r1", attempts=1, now=T0)
    assert await rs.finish("api", "r1", Outcome.failed(ErrorKind.TIMEOUT, "took more than 5s"), now=T0)
    assert not await rs.finish("api", "r1", Outcome.completed(b"{}"), now=T0)
    assert await rs.start("api", "r1", attempts=2, now=T0) is None
    rec = await rs.get("api", "r1", now=T0)
    assert rec is not None and rec.status == Status.FAILED
    assert rec.error is not None and (rec.error.kind, rec.error.message) == ("timeout", "took more than 5s")


async def test_a_queued_request_can_fail_without_starting(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new())
    assert await rs.finish("api", "r1", Outcome.failed(ErrorKind.MAX_ATTEMPTS, "3 attempts"), now=T0)
    assert not await rs.finish("api", "missing", Outcome.failed(ErrorKind.INTERNAL, "x"), now=T0)


async def test_expired_records_are_hidden_then_swept(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new("r1", ref="blob-1"))
    await rs.create(new("r2", payload=b"x"))
    assert await rs.get("api", "r1", now=T0 + 100) is None
    first = await rs.sweep(now=T0 + 100)
    assert sorted(first.blob_keys) == ["blob-1"]
    assert (await rs.sweep(now=T0 + 100)).blob_keys == []
    assert await rs.start("api", "r1", attempts=1, now=T0) is None


async def test_sweep_counts_what_it_removed_batch_by_batch(backends: Backends) -> None:
    rs = backends.records
    for i in range(5):
        await rs.create(new(f"r{i}", payload=b"x"))
    removed = 0
    while True:
        swept = await rs.sweep(now=T0 + 100, limit=2)
        assert swept.deleted <= 2 and swept.blob_keys == []
        removed += swept.deleted
        if swept.deleted < 2:
            break
    # a backend that expires records itself (Redis TTLs) has nothing to delete; the others delete all five
    assert removed in (0, 5)


async def test_idempotency_key_returns_the_holder(backends: Backends) -> None:
    rs = backends.records
    first = dataclasses.replace(new("r1"), idempotency_key="k", body_digest="d1", webhook_url="http://hook/x")
    assert await rs.create(first) is None
    duplicate = await rs.create(dataclasses.replace(new("r2"), idempotency_key="k", body_digest="d2"))
    assert duplicate == Duplicate(id="r1", body_digest="d1")
    assert await rs.get("api", "r2", now=T0) is None  # nothing stored for the duplicate
    other_api = dataclasses.replace(new("r3"), api="other", idempotency_key="k", body_digest="d1")
    assert await rs.create(other_api) is None  # keys are per API
    record = await rs.get("api", "r1", now=T0)
    assert record is not None and record.webhook_url == "http://hook/x"


async def test_an_expired_holder_frees_its_idempotency_key(backends: Backends) -> None:
    rs = backends.records
    assert await rs.create(dataclasses.replace(new("r1"), idempotency_key="k", body_digest="d")) is None
    later = dataclasses.replace(
        new("r2"), created_at=T0 + 200, expires_at=T0 + 300, idempotency_key="k", body_digest="d"
    )
    assert await rs.create(later) is None
    assert (await rs.get("api", "r2", now=T0 + 201)) is not None


async def test_webhook_state_is_kept_on_the_record(backends: Backends) -> None:
    rs = backends.records
    await rs.create(new())
    state = {"status": "retrying", "attempts": 2, "last_error": "the receiver answered 503"}
    assert await rs.set_webhook("api", "r1", state)
    record = await rs.get("api", "r1", now=T0)
    assert record is not None and record.webhook == state and record.webhook_url is None
    assert not await rs.set_webhook("api", "missing", state)


async def test_recent_lists_the_newest_unexpired_requests_first(backends: Backends) -> None:
    rs = backends.records
    for i in range(5):
        await rs.create(new(f"r{i}"))
    await rs.create(dataclasses.replace(new("r5"), expires_at=T0 + 10))  # the newest, expired at T0 + 10
    await rs.create(dataclasses.replace(new("r6"), api="other"))
    await rs.start("api", "r3", attempts=1, now=T0 + 1)
    assert await rs.finish("api", "r3", Outcome.completed(b'{"ok": 1}'), now=T0 + 2)
    await rs.start("api", "r2", attempts=1, now=T0 + 3)
    recent = await rs.recent("api", limit=3, now=T0 + 20)
    assert [(r.id, r.status) for r in recent] == [
        ("r4", Status.IN_QUEUE),
        ("r3", Status.COMPLETED),
        ("r2", Status.IN_PROGRESS),
    ]
    assert (recent[1].started_at, recent[1].finished_at, recent[1].attempts) == (T0 + 1, T0 + 2, 1)
    # a listing carries no payload, headers or result: get() has the result
    assert all(r.payload is None and r.headers == () and r.result is None for r in recent)
    assert [r.id for r in await rs.recent("api", limit=10, now=T0 + 5)] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in await rs.recent("other", limit=10, now=T0)] == ["r6"]
    assert await rs.recent("nobody", limit=10, now=T0) == []


async def test_catalog_put_get_list_delete(backends: Backends) -> None:
    cat = backends.catalog
    first = await cat.put_api("b-api", {"name": "b-api", "x": [1]}, "id1", now=T0)
    await cat.put_api("a-api", {"name": "a-api"}, "id0", now=T0)
    second = await cat.put_api("b-api", {"name": "b-api", "x": [2]}, "id2", now=T0 + 5, meta={"deployment_id": "d2"})
    assert (second.created_at, second.updated_at, second.spec_id) == (first.created_at, T0 + 5, "id2")
    assert (first.meta, second.meta) == ({}, {"deployment_id": "d2"})
    got = await cat.get_api("b-api")
    assert got is not None and got.spec == {"name": "b-api", "x": [2]}
    assert [e.name for e in await cat.list_apis()] == ["a-api", "b-api"]
    assert await cat.delete_api("b-api")
    assert not await cat.delete_api("b-api")
    assert await cat.get_api("b-api") is None


async def test_a_deleted_api_is_kept_as_retired_until_deleted_again(backends: Backends) -> None:
    cat = backends.catalog
    assert await cat.get_retired_api("r-api") is None
    first = await cat.put_api("r-api", {"name": "r-api", "v": 1}, "id1", now=T0, meta={"webhook_secret": "whsec_1"})
    assert await cat.get_retired_api("r-api") is None  # a deployed API is not retired
    assert await cat.delete_api("r-api")
    retired = await cat.get_retired_api("r-api")
    assert retired == first  # spec, meta (its webhook secret) and times, as deployed
    assert await cat.get_api("r-api") is None and [e.name for e in await cat.list_apis()] == []
    assert not await cat.delete_api("r-api")  # deleting nothing retires nothing
    assert await cat.get_retired_api("r-api") == first
    # deployed again and deleted again: the last entry replaces the first
    await cat.put_api("r-api", {"name": "r-api", "v": 2}, "id2", now=T0 + 9, meta={"webhook_secret": "whsec_2"})
    assert await cat.get_retired_api("r-api") == first
    assert await cat.delete_api("r-api")
    again = await cat.get_retired_api("r-api")
    assert again is not None and (again.spec, again.meta, again.created_at) == (
        {"name": "r-api", "v": 2},
        {"webhook_secret": "whsec_2"},
        T0 + 9,
    )
    assert await cat.get_retired_api("other") is None
