"""The Redis record store and catalog.

Records: one hash per request, ``<prefix>:r:<id>``, which Redis deletes by itself when the
record's retention ends: its TTL is ``expires_at - created_at``, counted on the server's clock
from the moment the record is stored (the same instant as ``expires_at`` when the gateway's clock
agrees with the server's, and no dependence on clock sync when it does not). Reads hide a record
from ``expires_at`` on whatever the TTL says, so the contract holds to the second.

The sweep's index: Redis cannot tell anyone that a key expired, so every request not yet terminal
is indexed apart from its record, in ``<prefix>:blobs:expiry`` (sorted set: id -> expires_at),
``<prefix>:expiry:api`` (hash: id -> API, whose queue holds it) and ``<prefix>:blobs:refs`` (hash:
id -> payload blob key), which have no TTL. :meth:`RedisRecordStore.sweep` takes the requests
expired at ``now`` from there: it deletes the record (if Redis has not yet) and its queue entry, and
returns its blob key, so no blob is orphaned even when the record itself expired long before the
sweep. At a terminal status a request leaves the index (:data:`HAND_OVER`), its blob key going to
``<prefix>:blobs:done``, which the sweep drains: the index is as large as the backlog.

Idempotency keys: ``<prefix>:idem:<api>:<key>``, a hash (id, body_digest, expires_at of the
holder) written by the same script as the record, with the same TTL, so the key expires with its
record. A holder whose ``expires_at`` is not after the new request's ``created_at`` frees the key
even before its TTL ends (clocks differ). API names are DNS labels, so the key cannot collide
across APIs.

Status changes go through one Lua script that checks the current status against
:func:`cortex.requests.sources_of`, so a terminal status never changes, whatever races.

Recent requests: ``<prefix>:recent:<api>``, a sorted set of the API's newest request ids, all
scored 0 so that they sort by id (time order, :mod:`cortex.ids`), trimmed to
:data:`~cortex.store.base.RECENT_KEPT` by the script that creates a record. Ids whose record
expired are dropped from it when a listing finds them gone.

Catalog: hash ``<prefix>:apis`` (name -> JSON of spec, spec_id, updated_at, meta) beside hash
``<prefix>:apis:created`` (name -> created_at), so a replacement keeps ``created_at`` atomically.
A delete moves the name's two fields to ``<prefix>:apis:retired`` and ``<prefix>:apis:retired:created``
in one script (:meth:`~cortex.store.base.Catalog.get_retired_api`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from cortex import recordfields as fields
from cortex.backends import Resources
from cortex.errors import BackendError
from cortex.recordfields import decoded, record_from
from cortex.redisdb import RedisServer, open_server, wrap_errors
from cortex.requests import Duplicate, NewRequest, Outcome, RequestRecord, Status, sources_of
from cortex.store.base import RECENT_KEPT, ApiEntry, Catalog, RecordStore, Swept

#: a record's hash holds the declared fields (:mod:`cortex.recordfields`) but its id, which is in its key
_LIGHT = tuple(name for name in fields.LIGHT if name != "id")
_FULL = (*_LIGHT, *fields.FULL[len(fields.LIGHT) :])
#: the fields of a record as :func:`values_record` reads them (a listing, a status read)
LIGHT, FULL = _LIGHT, _FULL

# Counts by status: each API has a sorted set of its ids per status, ``<prefix>:status:<api>:<status>``,
# scored by ``expires_at``; every script that changes a status moves the id between two of them, so
# :meth:`RedisRecordStore.counts` is one ZCOUNT per status (an id whose record expired by its TTL is
# past its score). The sweep trims them, for the APIs named in ``<prefix>:status:apis``.
# ``status_move`` takes the record's key (``<prefix>:r:<id>``) to find the prefix, as the take finds records.
STATUS_MOVE = """
local function status_move(record_key, id, api, from, to, expires_at)
  local sets = string.sub(record_key, 1, #record_key - #id - 2) .. 'status:' .. api .. ':'
  if from then redis.call('ZREM', sets .. from, id) end
  if to then
    expires_at = expires_at or redis.call('HGET', record_key, 'expires_at')
    if expires_at then redis.call('ZADD', sets .. to, expires_at, id) end
  end
end
"""

# KEYS: record, expiry, refs, idempotency key (or the record again when there is none), recent ids,
# the API of each indexed record (the sweep removes the queue entries of the records it sweeps).
# ARGV: ttl (ms), expires_at, id, blob key or '', created_at, body digest or '' (unused without an
# idempotency key), then field/value pairs. Returns {id, body digest or false} of the holder of
# the idempotency key (nothing stored); goes on (stored) otherwise. The data plane's submit adds
# the queue entry after it.
CREATE_BODY = (
    STATUS_MOVE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('request id ' .. ARGV[3] .. ' already exists') end
local keyed = KEYS[4] ~= KEYS[1]
if keyed then
  local held = redis.call('HMGET', KEYS[4], 'id', 'body_digest', 'expires_at')
  if held[1] and tonumber(held[3]) > tonumber(ARGV[5]) then return {held[1], held[2]} end
  redis.call('DEL', KEYS[4])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if keyed then
  redis.call('HSET', KEYS[4], 'id', ARGV[3], 'expires_at', ARGV[2])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], 'body_digest', ARGV[6]) end
  redis.call('PEXPIRE', KEYS[4], ARGV[1])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[6], ARGV[3], ARGV[8])  -- ARGV[7], ARGV[8]: 'api', the API
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) end
redis.call('ZADD', KEYS[5], 0, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(KEPT + 1))
status_move(KEYS[1], ARGV[3], ARGV[8], false, 'in_queue', ARGV[2])
redis.call('SADD', string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[3] - 2) .. 'status:apis', ARGV[8])
""".replace("KEPT", str(RECENT_KEPT))
)
_CREATE = CREATE_BODY + "return 1\n"

#: the fields a listing reads: the light ones but the result
_LISTED = tuple(field for field in _LIGHT if field != "result")

# KEYS: record. ARGV: api, webhook state (JSON). 1 when set, 0 when the record is missing or another API's.
_SET_WEBHOOK = """
if redis.call('HGET', KEYS[1], 'api') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2])
return 1
"""

# At a terminal status, the record's payload blob is handed to the sweep: its key moves from the
# record to the list of blobs to delete. Nothing of the request is left for the sweep then (its
# queue entry was acked or removed; its TTL deletes the record and idempotency key), so it leaves
# the sweep's index: that holds only the requests not yet terminal, and the memory it takes stays
# that of the backlog. KEYS: record, blobs to delete, expiry, refs, record key prefix (a key name
# only, never read), API of each indexed record.
HAND_OVER = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'completed' or st == 'failed' or st == 'cancelled' then
  local ref = redis.call('HGET', KEYS[1], 'payload_ref')
  if ref then
    redis.call('HDEL', KEYS[1], 'payload_ref')
    redis.call('RPUSH', KEYS[2], ref)
  end
  local id = string.sub(KEYS[1], string.len(KEYS[5]) + 1)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[6], id)
end
"""

# KEYS: record, then HAND_OVER's. ARGV: api, return the record (1|0), S, S allowed current statuses, F, F field/value
# pairs to set, then fields to delete. False when the record is missing, another API's, or the
# transition is not allowed.
_TRANSITION = (
    STATUS_MOVE
    + """
local current = redis.call('HMGET', KEYS[1], 'api', 'status')
if current[1] ~= ARGV[1] then return false end
local s = tonumber(ARGV[3])
local allowed = false
for i = 4, 3 + s do
  if ARGV[i] == current[2] then allowed = true end
end
if not allowed then return false end
local f = tonumber(ARGV[4 + s])
local at = 5 + s
if f > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, at, at + 2 * f - 1)) end
at = at + 2 * f
if at <= #ARGV then redis.call('HDEL', KEYS[1], unpack(ARGV, at)) end
local id = string.sub(KEYS[1], string.len(KEYS[5]) + 1)
status_move(KEYS[1], id, ARGV[1], current[2], redis.call('HGET', KEYS[1], 'status'))
if ARGV[2] == '1' then return redis.call('HMGET', KEYS[1], FIELDS) end
HAND_OVER
return 1
""".replace("FIELDS", ", ".join(f"'{field}'" for field in _FULL)).replace("HAND_OVER", HAND_OVER)
)

# KEYS: expiry, refs, blobs to delete, API of each record. ARGV: now, limit, record key prefix, queue
# key prefix, status sets' prefix, then every status (the status sets lose the ids expired at ``now``).
# Returns {expired records swept (whether Redis had already expired them by their TTL or not), blob
# keys...}: the blobs of those records, then up to ``limit`` of the terminal records'.
# Each swept record's queue entry goes too (the queue's keys of its API, :mod:`cortex.queue.redis`).
_SWEEP = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {#ids}
for _, id in ipairs(ids) do
  local ref = redis.call('HGET', KEYS[2], id)
  if ref then out[#out + 1] = ref end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('UNLINK', ARGV[3] .. id)
  local api = redis.call('HGET', KEYS[4], id)
  if api then
    for _, st in ipairs({'in_queue', 'in_progress'}) do redis.call('ZREM', ARGV[5] .. api .. ':' .. st, id) end
    redis.call('HDEL', KEYS[4], id)
    local q = ARGV[4] .. '{' .. api .. '}:'
    redis.call('ZREM', q .. 'due', id)
    redis.call('HDEL', q .. 'attempts', id)
    redis.call('HDEL', q .. 'tokens', id)
  end
end
for _, api in ipairs(redis.call('SMEMBERS', ARGV[5] .. 'apis')) do
  for i = 6, #ARGV do redis.call('ZREMRANGEBYSCORE', ARGV[5] .. api .. ':' .. ARGV[i], '-inf', ARGV[1]) end
end
local done = redis.call('LPOP', KEYS[3], tonumber(ARGV[2]))
if done then
  for _, ref in ipairs(done) do out[#out + 1] = ref end
end
return out
"""


def _text(value: float) -> str:
    # repr round-trips a float exactly
    return repr(float(value))


text_of = _text


class RedisRecordStore(RecordStore):
    """Request records as Redis hashes that expire with their retention."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self._create = server.client.register_script(_CREATE)
        self._transition = server.client.register_script(_TRANSITION)
        self._sweep = server.client.register_script(_SWEEP)
        self._set_webhook = server.client.register_script(_SET_WEBHOOK)
        self._expiry, self._refs = server.key("blobs", "expiry"), server.key("blobs", "refs")
        self._doomed = server.key("blobs", "done")
        self._apis_of = server.key("expiry", "api")

    def record_key(self, request_id: str) -> str:
        """The key of a request's hash (the empty id gives the prefix of them all)."""
        return self._record_key(request_id)

    def _record_key(self, request_id: str) -> str:
        return self._server.key("r", request_id)

    def _idempotency_key(self, api: str, key: str) -> str:
        return self._server.key("idem", api, key)

    def _recent_key(self, api: str) -> str:
        return self._server.key("recent", api)

    async def create(self, request: NewRequest) -> Duplicate | None:
        keys, args = self.create_arguments(request)
        with wrap_errors("create", self._server.url):
            held = await self._create(keys=keys, args=args)
        return duplicate_of(held)

    def create_arguments(self, request: NewRequest) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV of :data:`CREATE_BODY` for ``request``."""
        ttl_ms = max(1, math.ceil((request.expires_at - request.created_at) * 1000))
        fields: list[str | bytes] = ["api", request.api, "status", Status.IN_QUEUE.value, "attempts", "0"]
        fields += ["created_at", _text(request.created_at), "expires_at", _text(request.expires_at)]
        fields += ["headers", json.dumps(request.headers, separators=(",", ":"))]
        optional = {
            "payload": request.payload,
            "payload_ref": request.payload_ref,
            "idempotency_key": request.idempotency_key,
            "body_digest": request.body_digest,
            "webhook_url": request.webhook_url,
            "priority": None if request.priority is None else str(request.priority),
        }
        fields += [item for name, value in optional.items() if value is not None for item in (name, value)]
        record_key = self._record_key(request.id)
        idem_key = (
            record_key
            if request.idempotency_key is None
            else self._idempotency_key(request.api, request.idempotency_key)
        )
        args = [
            ttl_ms,
            _text(request.expires_at),
            request.id,
            request.payload_ref or "",
            _text(request.created_at),
            request.body_digest or "",
            *fields,
        ]
        return [record_key, self._expiry, self._refs, idem_key, self._recent_key(request.api), self._apis_of], args

    async def get(self, api: str, request_id: str, *, now: float) -> RequestRecord | None:
        with wrap_errors("get", self._server.url):
            values: list[Any] = await self._server.client.hmget(self._record_key(request_id), list(_LIGHT))
        if values[0] is None or values[0].decode() != api or float(values[3]) <= now:
            return None
        return _record(request_id, values)

    async def recent(self, api: str, *, limit: int, now: float) -> list[RequestRecord]:
        found: list[RequestRecord] = []
        gone: list[Any] = []
        offset = 0
        with wrap_errors("recent", self._server.url):
            while len(found) < limit:  # pages of ids, newest first, past those whose record is gone
                ids: list[Any] = await self._server.client.zrevrangebylex(
                    self._recent_key(api), "+", "-", start=offset, num=limit
                )
                async with self._server.client.pipeline(transaction=False) as pipe:
                    for request_id in ids:
                        pipe.hmget(self._record_key(request_id.decode()), list(_LISTED))
                    rows: list[list[Any]] = await pipe.execute()
                for request_id, values in zip(ids, rows, strict=True):
                    if values[0] is None:
                        gone.append(request_id)
                    elif float(values[3]) > now and len(found) < limit:
                        values.insert(_LIGHT.index("result"), None)
                        found.append(_record(request_id.decode(), values))
                if len(ids) < limit:
                    break
                offset += len(ids)
            if gone:
                await self._server.client.zrem(self._recent_key(api), *gone)
        return found

    async def start(self, api: str, request_id: str, *, attempts: int, now: float) -> RequestRecord | None:
        changes: dict[str, str | bytes] = {
            "status": Status.IN_PROGRESS.value,
            "started_at": _text(now),
            "attempts": str(attempts),
        }
        values = await self._change(api, request_id, Status.IN_PROGRESS, changes, (), full=True)
        return None if values is None else _record(request_id, values)

    async def finish(self, api: str, request_id: str, outcome: Outcome, *, now: float) -> bool:
        changes: dict[str, str | bytes] = {"status": outcome.status.value, "finished_at": _text(now)}
        dropped = ["headers", "payload"]
        if outcome.result is not None:
            changes["result"] = outcome.result
        if outcome.error is not None:
            changes["error_kind"], changes["error_message"] = outcome.error.kind, outcome.error.message
        return await self._change(api, request_id, outcome.status, changes, dropped, full=False) is not None

    async def _change(
        self,
        api: str,
        request_id: str,
        new: Status,
        changes: dict[str, str | bytes],
        dropped: tuple[str, ...] | list[str],
        *,
        full: bool,
    ) -> Any:
        sources = [status.value for status in sources_of(new)]
        pairs = [item for pair in changes.items() for item in pair]
        args = [api, int(full), len(sources), *sources, len(changes), *pairs, *dropped]
        with wrap_errors("status change", self._server.url):
            return await self._transition(keys=[self._record_key(request_id), *self.hand_over_keys()], args=args)

    def hand_over_keys(self) -> list[str]:
        """The keys after the record's that :data:`HAND_OVER` names."""
        return [self._doomed, self._expiry, self._refs, self._record_key(""), self._apis_of]

    async def set_webhook(self, api: str, request_id: str, state: dict[str, Any]) -> bool:
        text = json.dumps(state, separators=(",", ":"))
        with wrap_errors("webhook state", self._server.url):
            done = await self._set_webhook(keys=[self._record_key(request_id)], args=[api, text])
        return bool(done)

    async def counts(self, api: str, *, now: float) -> dict[Status, int]:
        with wrap_errors("counts", self._server.url):
            async with self._server.client.pipeline(transaction=True) as pipe:
                for status in Status:
                    pipe.zcount(self._server.key("status", api, status.value), f"({_text(now)}", "+inf")
                found: list[int] = await pipe.execute()
        return dict(zip(Status, found, strict=True))

    async def sweep(self, *, now: float, limit: int = 1000) -> Swept:
        with wrap_errors("sweep", self._server.url):
            keys = [self._expiry, self._refs, self._doomed, self._apis_of]
            args: list[str | int] = [_text(now), limit, self._record_key(""), self._server.key("q", "")]
            args += [self._server.key("status", ""), *(status.value for status in Status)]
            out = await self._sweep(keys=keys, args=args)
        return Swept(deleted=int(out[0]), blob_keys=[ref.decode() for ref in out[1:]])


def duplicate_of(reply: Any) -> Duplicate | None:
    """The :class:`Duplicate` a create script answered with, or None when it stored the record."""
    if isinstance(reply, list):
        return Duplicate(id=reply[0].decode(), body_digest=None if reply[1] is None else reply[1].decode())
    return None


def values_record(request_id: str, values: list[Any]) -> RequestRecord:
    """A record from the values of :data:`LIGHT` (then, if present, the rest of :data:`FULL`)."""
    return _record(request_id, values)


def _record(request_id: str, values: list[Any]) -> RequestRecord:
    stored = {name: decoded(name, value) for name, value in zip(_FULL, values, strict=False)}
    if any(stored.get(name) is None for name in ("api", "status", "created_at", "expires_at")):
        raise BackendError(f"request {request_id} has a damaged record in Redis")  # pragma: no cover
    return record_from({**stored, "id": request_id})


class RedisCatalog(Catalog):
    """Deployed API specs in two Redis hashes."""

    _PUT = """
    redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    return redis.call('HGET', KEYS[2], ARGV[1])
    """

    # the entry leaves the catalog's hashes for the retired ones (replacing the name's last), or stays
    _RETIRE = """
    local doc = redis.call('HGET', KEYS[1], ARGV[1])
    if not doc then return 0 end
    local created = redis.call('HGET', KEYS[2], ARGV[1])
    redis.call('HSET', KEYS[3], ARGV[1], doc)
    if created then redis.call('HSET', KEYS[4], ARGV[1], created) else redis.call('HDEL', KEYS[4], ARGV[1]) end
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    return 1
    """

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self._apis, self._created = server.key("apis"), server.key("apis", "created")
        self._retired = server.key("apis", "retired")
        self._retired_created = server.key("apis", "retired", "created")
        self._put = server.client.register_script(self._PUT)
        self._retire = server.client.register_script(self._RETIRE)

    async def put_api(
        self, name: str, spec: dict[str, Any], spec_id: str, *, now: float, meta: dict[str, Any] | None = None
    ) -> ApiEntry:
        doc = json.dumps({"spec": spec, "spec_id": spec_id, "updated_at": now, "meta": meta or {}}, sort_keys=True)
        with wrap_errors("catalog write", self._server.url):
            created = await self._put(keys=[self._apis, self._created], args=[name, doc, _text(now)])
        return _entry(name, doc.encode(), created)

    async def get_api(self, name: str) -> ApiEntry | None:
        with wrap_errors("catalog read", self._server.url):
            async with self._server.client.pipeline(transaction=True) as pipe:
                pipe.hget(self._apis, name)
                pipe.hget(self._created, name)
                doc, created = await pipe.execute()
        return None if doc is None else _entry(name, doc, created)

    async def list_apis(self) -> list[ApiEntry]:
        with wrap_errors("catalog read", self._server.url):
            async with self._server.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._apis)
                pipe.hgetall(self._created)
                docs, created = await pipe.execute()
        entries = [_entry(name.decode(), doc, created.get(name)) for name, doc in docs.items()]
        return sorted(entries, key=lambda entry: entry.name)

    async def delete_api(self, name: str) -> bool:
        keys = [self._apis, self._created, self._retired, self._retired_created]
        with wrap_errors("catalog write", self._server.url):
            return bool(await self._retire(keys=keys, args=[name]))

    async def get_retired_api(self, name: str) -> ApiEntry | None:
        with wrap_errors("catalog read", self._server.url):
            async with self._server.client.pipeline(transaction=True) as pipe:
                pipe.hget(self._retired, name)
                pipe.hget(self._retired_created, name)
                doc, created = await pipe.execute()
        return None if doc is None else _entry(name, doc, created)


def _entry(name: str, doc: bytes, created: bytes | None) -> ApiEntry:
    data = json.loads(doc)
    updated_at = float(data["updated_at"])
    return ApiEntry(
        name=name,
        spec=data["spec"],
        spec_id=data["spec_id"],
        created_at=updated_at if created is None else float(created),
        updated_at=updated_at,
        meta=data["meta"],
    )


async def open_store(url: str, resources: Resources) -> tuple[RedisRecordStore, RedisCatalog]:
    """The record store and catalog on the Redis server of ``redis://host:port/db?prefix=cortex``."""
    server = await open_server(url, resources)
    return RedisRecordStore(server), RedisCatalog(server)
