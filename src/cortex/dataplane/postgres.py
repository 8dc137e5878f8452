"""The PostgreSQL data plane: each step one statement (submit calls a PL/pgSQL function).

Submit is a function because the idempotency key needs a loop (an expired holder gives up its
key, a concurrent one may take it meanwhile); it runs server-side in the statement's transaction,
so the record, its queue row and the NOTIFY that wakes a worker commit together. Take and
finish are one statement each, with data-modifying CTEs on the two tables.

The submissions of one turn of the event loop share one call of the function, and the finishes
one statement (:mod:`cortex.dataplane.batching`): one commit, so one fsync of the log, for all of
them. Takes need no batching: a dequeuer has one take under way at a time, for all its free slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from cortex.backends import Resources
from cortex.dataplane.base import DataPlane, Finished, Taken, check_batch
from cortex.dataplane.batching import TurnBatcher
from cortex.dataplane.watch import ChangeWatch
from cortex.errors import BackendError
from cortex.postgresdb import CONNECT_TIMEOUT_S, PostgresServer, open_server, wrap_errors
from cortex.queue.base import Lease
from cortex.queue.postgres import PostgresQueue
from cortex.requests import Duplicate, NewRequest, Outcome, Status, now, sources_of, status_values
from cortex.store.postgres import FULL, row_record

#: attempts at the idempotency key before a submit gives up (each follows a holder that expired or vanished)
_SUBMIT_TRIES = 5

# One call per batch of submissions (the submissions of one turn of the event loop, one commit for all),
# as arrays, one element per submission, in the order they are handled. Per submission, in order: ``n``
# (its index, from 1), ``outcome`` ('s' stored, 'd' a duplicate of ``held_id``, 'c' the key still
# contended after the tries), and the holder. The holder of a key is read without a lock: an unexpired
# one does not stop holding it meanwhile (only the sweep deletes a record, once expired), and taking no
# row lock keeps a batch from waiting on a take that updates the same records.
SCHEMA = f"""
CREATE OR REPLACE FUNCTION {{s}}.submit_batch(
    p_ids TEXT[], p_apis TEXT[], p_created DOUBLE PRECISION[], p_expires DOUBLE PRECISION[], p_headers TEXT[],
    p_payloads BYTEA[], p_refs TEXT[], p_keys TEXT[], p_digests TEXT[], p_webhooks TEXT[], p_priorities INTEGER[],
    p_channel TEXT
) RETURNS TABLE (n INTEGER, outcome TEXT, held_id TEXT, held_digest TEXT) LANGUAGE plpgsql AS $$
DECLARE
    h RECORD;
    woken TEXT[] := '{{}}';
BEGIN
    FOR k IN 1..coalesce(array_length(p_ids, 1), 0) LOOP
        n := k;
        outcome := 'c';
        held_id := NULL;
        held_digest := NULL;
        FOR i IN 1..{_SUBMIT_TRIES} LOOP
            INSERT INTO {{s}}.requests (id, api, status, created_at, expires_at, headers, payload, payload_ref,
                idempotency_key, body_digest, webhook_url, priority)
            VALUES (p_ids[k], p_apis[k], '{Status.IN_QUEUE.value}', p_created[k], p_expires[k], p_headers[k],
                p_payloads[k], p_refs[k], p_keys[k], p_digests[k], p_webhooks[k], p_priorities[k])
            ON CONFLICT (api, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
            IF FOUND THEN
                INSERT INTO {{s}}.queue (api, id, priority) VALUES (p_apis[k], p_ids[k], coalesce(p_priorities[k], 0))
                    ON CONFLICT (id) DO NOTHING;
                woken := woken || p_apis[k];
                outcome := 's';
                EXIT;
            END IF;
            SELECT r.id, r.body_digest, r.expires_at INTO h FROM {{s}}.requests AS r
                WHERE r.api = p_apis[k] AND r.idempotency_key = p_keys[k];
            IF FOUND THEN
                IF h.expires_at > p_created[k] THEN
                    outcome := 'd';
                    held_id := h.id;
                    held_digest := h.body_digest;
                    EXIT;
                END IF;
                -- expired but not swept yet: it no longer holds the key
                UPDATE {{s}}.requests SET idempotency_key = NULL WHERE id = h.id AND expires_at <= p_created[k];
            END IF;
        END LOOP;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify(p_channel, api) FROM (SELECT DISTINCT unnest(woken) AS api) AS apis;
END $$;

-- A batch (``POST /<api>/batch``), all or nothing, as the arrays of submit_batch in the batch's order.
-- The holders of the keys are looked at first: one held stores nothing, and the holders are the
-- rows answered (``n``, from 1, and the holder). Else every record and queue row is inserted, the
-- rows in the batch's order; a key taken meanwhile by another submission, or an id already stored,
-- fails the statement, which undoes it all. The records go in in the order of their keys, so that
-- two batches contending for the same keys wait for each other in one order, never in a cycle.
CREATE OR REPLACE FUNCTION {{s}}.submit_all(
    p_ids TEXT[], p_apis TEXT[], p_created DOUBLE PRECISION[], p_expires DOUBLE PRECISION[], p_headers TEXT[],
    p_payloads BYTEA[], p_refs TEXT[], p_keys TEXT[], p_digests TEXT[], p_webhooks TEXT[], p_priorities INTEGER[],
    p_channel TEXT
) RETURNS TABLE (n INTEGER, held_id TEXT, held_digest TEXT) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT t.n::INTEGER, r.id, r.body_digest
        FROM unnest(p_apis, p_keys, p_created) WITH ORDINALITY AS t(api, key, created, n)
        JOIN {{s}}.requests AS r ON r.api = t.api AND r.idempotency_key = t.key AND r.expires_at > t.created
        ORDER BY t.n;
    IF FOUND THEN
        RETURN;
    END IF;
    -- expired but not swept yet: they no longer hold their keys
    UPDATE {{s}}.requests AS r SET idempotency_key = NULL
        FROM unnest(p_apis, p_keys, p_created) AS t(api, key, created)
        WHERE r.api = t.api AND r.idempotency_key = t.key AND r.expires_at <= t.created;
    INSERT INTO {{s}}.requests (id, api, status, created_at, expires_at, headers, payload, payload_ref,
        idempotency_key, body_digest, webhook_url, priority)
    SELECT t.id, t.api, '{Status.IN_QUEUE.value}', t.created, t.expires, t.headers, t.payload, t.ref, t.key,
        t.digest, t.webhook, t.priority
    FROM unnest(p_ids, p_apis, p_created, p_expires, p_headers, p_payloads, p_refs, p_keys, p_digests, p_webhooks,
        p_priorities) AS t(id, api, created, expires, headers, payload, ref, key, digest, webhook, priority)
    ORDER BY t.api, t.key;
    INSERT INTO {{s}}.queue (api, id, priority)
    SELECT t.api, t.id, coalesce(t.priority, 0)
    FROM unnest(p_apis, p_ids, p_priorities) WITH ORDINALITY AS t(api, id, priority, n) ORDER BY t.n;
    PERFORM pg_notify(p_channel, api) FROM (SELECT DISTINCT unnest(p_apis) AS api) AS apis;
END $$;
"""

_SUBMIT = """
SELECT n, outcome, held_id, held_digest FROM {s}.submit_batch($1::text[], $2::text[], $3::float8[], $4::float8[],
    $5::text[], $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12)
"""

_SUBMIT_ALL = """
SELECT n, held_id, held_digest FROM {s}.submit_all($1::text[], $2::text[], $3::float8[], $4::float8[],
    $5::text[], $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12)
"""


def _columns(alias: str, names: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in names.split(","))


_FULL_N = len(FULL.split(","))
# $1 api, $2 limit, $3 visibility (s), $4 max_attempts, $5 in_progress, $6 started_at, $7 start sources.
# In the take's order (highest priority, then longest visible, first). Per lease: id, attempts, token,
# since, seq, then FULL of the started record (NULLs if not started), then FULL of the record as it
# stood when the lease is past max_attempts (NULLs otherwise).
_TAKE = f"""
WITH picked AS (
    SELECT seq, visible_at, priority FROM {{s}}.queue WHERE api = $1 AND visible_at <= now()
    ORDER BY priority DESC, visible_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {{s}}.queue AS q
    SET visible_at = now() + make_interval(secs => $3), attempts = q.attempts + 1, token = nextval('{{s}}.queue_token')
    FROM picked WHERE q.seq = picked.seq
    RETURNING q.id, q.attempts, q.token, picked.visible_at AS since, picked.seq, picked.priority
), started AS (
    UPDATE {{s}}.requests AS r SET status = $5, started_at = $6, attempts = l.attempts
    FROM leased AS l
    WHERE r.id = l.id AND r.api = $1 AND l.attempts <= $4 AND r.status = ANY($7::text[])
    RETURNING {_columns("r", FULL)}, pg_notify('{{c}}', r.id)
)
SELECT l.id, l.attempts, l.token, l.since, l.seq, {_columns("st", FULL)}, {_columns("pre", FULL)}
FROM leased AS l
LEFT JOIN started AS st ON st.id = l.id
LEFT JOIN {{s}}.requests AS pre ON pre.id = l.id AND pre.api = $1 AND l.attempts > $4
ORDER BY l.priority DESC, l.since, l.seq
"""

# One row per finish, as arrays: $1 ids, $2 tokens, $3 apis, $4 statuses, $5 finished_at, $6 results,
# $7 error kinds, $8 error messages, $9 the statuses each may leave (comma-joined). Per finish, in
# order: (acked, finished): (false, false) the lease was lost, (true, false) the record was terminal.
_FINISH = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::float8[], $6::bytea[],
        $7::text[], $8::text[], $9::text[]) WITH ORDINALITY
        AS t(id, token, api, status, finished_at, result, error_kind, error_message, sources, n)
), held AS (
    DELETE FROM {s}.queue AS q USING input WHERE q.id = input.id AND q.token = input.token RETURNING q.id
), finished AS (
    UPDATE {s}.requests AS r SET status = input.status, finished_at = input.finished_at, result = input.result,
        error_kind = input.error_kind, error_message = input.error_message, headers = NULL, payload = NULL
    FROM input
    WHERE r.id = input.id AND r.id IN (SELECT id FROM held) AND r.api = input.api
        AND r.status = ANY(string_to_array(input.sources, ','))
    RETURNING r.id, pg_notify('{c}', r.id)
)
SELECT input.n, held.id IS NOT NULL, finished.id IS NOT NULL
FROM input LEFT JOIN held ON held.id = input.id LEFT JOIN finished ON finished.id = input.id
ORDER BY input.n
"""

_START_SOURCES = list(status_values(sources_of(Status.IN_PROGRESS)))


class PostgresDataPlane(DataPlane):
    """Submit, take and finish on the requests and queue tables of one PostgreSQL schema."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._pool = server.pool
        self._queue = PostgresQueue(server)
        #: where take and finish announce the ids they start or finish (:mod:`cortex.dataplane.watch`)
        self._channel = f"cortex_chg_{server.schema}"
        self._submit, self._take, self._finish = (
            server.sql(text.replace("{c}", self._channel)) for text in (_SUBMIT, _TAKE, _FINISH)
        )
        self._submit_all_sql = server.sql(_SUBMIT_ALL)
        self._submits: TurnBatcher[NewRequest, Duplicate | BackendError | None] = TurnBatcher(self._submit_all)
        self._finishes: TurnBatcher[tuple[Lease, Outcome, float], Finished] = TurnBatcher(self._finish_all)

    async def submit(self, request: NewRequest) -> Duplicate | None:
        """One call, shared by the submissions of one turn of the event loop (one commit for all)."""
        answer = await self._submits(request)
        if isinstance(answer, BackendError):
            raise answer
        return answer

    async def _submit_all(self, requests: list[NewRequest]) -> list[Duplicate | BackendError | None]:
        # Handled in the order of their idempotency keys, so that two batches contending for the same
        # keys (two gateways) wait for each other's unique-index entries in one order, never in a cycle.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].api, requests[i].idempotency_key or ""))
        columns = _submit_columns([requests[index] for index in order])
        with wrap_errors("submit", self._server.url):
            rows = await self._pool.fetch(self._submit, *columns, self._queue.channel)
        answers: list[Duplicate | BackendError | None] = [None] * len(requests)
        for n, outcome, held_id, held_digest in rows:
            index = order[n - 1]
            if outcome == "d":
                answers[index] = Duplicate(id=held_id, body_digest=held_digest)
            elif outcome == "c":
                answers[index] = BackendError(
                    f"PostgreSQL submit failed at {self._server.url}: the idempotency key of request"
                    f" {requests[index].id} is still contended after {_SUBMIT_TRIES} tries"
                )
        return answers

    async def submit_many(self, requests: Sequence[NewRequest]) -> list[Duplicate | None] | None:
        """One statement for the whole batch (:data:`SCHEMA`'s ``submit_all``); its own commit."""
        check_batch(requests)
        columns = _submit_columns(requests)
        for _ in range(_SUBMIT_TRIES):
            try:
                with wrap_errors("submit", self._server.url):
                    rows = await self._pool.fetch(self._submit_all_sql, *columns, self._queue.channel)
            except BackendError as exc:
                cause = exc.__cause__
                if isinstance(cause, asyncpg.UniqueViolationError) and cause.constraint_name == "requests_idempotency":
                    continue  # a key taken meanwhile: the next call finds its holder (nothing was stored)
                raise
            if not rows:
                return None
            held: list[Duplicate | None] = [None] * len(requests)
            for n, held_id, held_digest in rows:
                held[n - 1] = Duplicate(id=held_id, body_digest=held_digest)
            return held
        raise BackendError(
            f"PostgreSQL submit failed at {self._server.url}: the idempotency keys of a batch"
            f" are still contended after {_SUBMIT_TRIES} tries"
        )

    async def take(
        self, api: str, *, visibility: float, limit: int, max_attempts: int, timeout: float, poll: float = 0.05
    ) -> list[Taken]:
        async def once() -> list[Taken]:
            with wrap_errors("take", self._server.url):
                rows = await self._pool.fetch(
                    self._take,
                    api,
                    limit,
                    float(visibility),
                    max_attempts,
                    Status.IN_PROGRESS.value,
                    now(),
                    _START_SOURCES,
                )
            taken = []
            for row in rows:
                lease = Lease(api=api, id=row[0], attempts=row[1], token=row[2])
                full, light = tuple(row[5 : 5 + _FULL_N]), tuple(row[5 + _FULL_N : 5 + 2 * _FULL_N])
                if full[0] is not None:
                    taken.append(Taken(lease, row_record(full), started=True))
                else:
                    taken.append(Taken(lease, row_record(light) if light[0] is not None else None, started=False))
            return taken

        return await self._queue.wait_take(api, once, timeout=timeout, poll=poll)

    async def finish(self, lease: Lease, outcome: Outcome, *, now: float) -> Finished:
        """One statement, shared by the finishes of one turn of the event loop (one commit for all)."""
        return await self._finishes((lease, outcome, now))

    async def _finish_all(self, items: list[tuple[Lease, Outcome, float]]) -> list[Finished]:
        columns: list[list[Any]] = [[] for _ in range(9)]
        for lease, outcome, finished_at in items:
            error = outcome.error
            row = (
                lease.id,
                lease.token,
                lease.api,
                outcome.status.value,
                finished_at,
                outcome.result,
                None if error is None else error.kind,
                None if error is None else error.message,
                ",".join(status_values(sources_of(outcome.status))),
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        with wrap_errors("finish", self._server.url):
            rows = await self._pool.fetch(self._finish, *columns)
        return [
            Finished.LEASE_LOST if not acked else Finished.FINISHED if finished else Finished.ALREADY_TERMINAL
            for _, acked, finished in rows
        ]

    async def _listen_changes(self, watch: ChangeWatch) -> None:
        conn = await asyncpg.connect(self._server.dsn, timeout=CONNECT_TIMEOUT_S)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def terminated(_: object) -> None:
            if not lost.done():
                lost.set_result(None)

        try:
            conn.add_termination_listener(terminated)
            await conn.add_listener(self._channel, lambda _c, _p, _ch, request_id: watch.changed(str(request_id)))
            watch.subscribed()
            await lost
        finally:
            with contextlib.suppress(asyncpg.InterfaceError, OSError):
                await conn.close(timeout=5)

    async def aclose(self) -> None:
        await super().aclose()
        await self._submits.aclose()
        await self._finishes.aclose()
        await self._queue.aclose()


def _submit_columns(requests: Sequence[NewRequest]) -> list[list[Any]]:
    """The arrays of ``submit_batch`` and ``submit_all``, one element per request in the order given."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for request in requests:
        row = (
            request.id,
            request.api,
            request.created_at,
            request.expires_at,
            json.dumps(request.headers, separators=(",", ":")),
            request.payload,
            request.payload_ref,
            request.idempotency_key,
            request.body_digest,
            request.webhook_url,
            request.priority,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def open_plane(url: str, resources: Resources) -> PostgresDataPlane:
    """The data plane in the PostgreSQL database of ``postgresql://...?schema=cortex``."""
    return PostgresDataPlane(await open_server(url, resources, SCHEMA))
