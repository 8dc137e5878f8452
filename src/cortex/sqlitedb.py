"""One SQLite database shared by the embedded queue, record store and catalog of a process.

Group commit on the event loop, which never waits on a lock or a sync (DESIGN §8): the writes asked
for during one turn of the loop run at the start of the next, in one transaction, on a connection
whose busy timeout is 0 and that never checkpoints. Should another process hold the write lock,
the batch goes to the writer thread instead, which waits for it (and takes every write asked for
while it is busy, again in one transaction); the writer thread also checkpoints the WAL, every
:data:`_CHECKPOINT_EVERY` commits made on the loop. So a request costs no thread hop and no GIL
hand-over when the database is free, and a burst shares one commit either way.

Should one write of a batch fail, the batch is rolled back and run again with each write in its
own savepoint, so that one failing write does not undo the others. Reads run on the loop as well
(in WAL mode a read never waits for a writer); one that finds the database busy (a checkpoint
restarting the WAL) runs on a reader thread, which may wait. Several processes may open the same
file: SQLite's lock serialises their writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from cortex.backends import Resources, local_path
from cortex.errors import BackendError
from cortex.sqlitetables import migrate, up_to_date

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]

#: how many waiting writes one transaction takes at most
_MAX_BATCH = 512
#: how long a writer waits for another process's write lock before failing (``?busy_timeout=`` in the URL)
BUSY_TIMEOUT_S = 30.0
#: after this many writes on the event loop, the writer thread checkpoints the WAL
_CHECKPOINT_EVERY = 100
#: how long a truncating checkpoint waits for the connections using the WAL
_TRUNCATE_WAIT_S = 1.0
#: past this size, a checkpoint waits for the readers and empties the WAL file (it would keep growing
#: under steady load from several processes: a passive one can never restart it)
_WAL_LIMIT = 64 * 1024 * 1024
#: SQLite's primary result codes that mean "someone else holds the lock": try on a thread instead
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED


class _Checkpoint:
    """Asks the writer thread to checkpoint the WAL (the event loop's connection never does)."""

    def __init__(self, *, truncate: bool = False) -> None:
        #: empty the WAL file too (after a retention sweep: deleted data must not stay readable there)
        self.truncate = truncate


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Work, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


Result = tuple[Any, BaseException | None]


def _settle(batch: list[_Job], results: list[Result]) -> None:
    """Hand the results to the waiting callers (on their event loop's thread)."""
    for job, (result, error) in zip(batch, results, strict=True):
        if job.future.done():  # the caller gave up (cancelled); the write itself has happened
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


class SqliteDatabase:
    """A SQLite file opened for one process: batches committed on the event loop, a writer thread when busy."""

    def __init__(
        self,
        path: Path,
        migrate: Callable[[sqlite3.Connection], None],
        *,
        up_to_date: Callable[[sqlite3.Connection], bool] | None = None,
        readers: int = 2,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = path
        #: seconds a write (or a read on a thread) waits for another process's lock before it fails
        self.busy_timeout = busy_timeout
        path.parent.mkdir(parents=True, exist_ok=True)
        self._jobs: queue.SimpleQueue[list[_Job] | _Checkpoint | None] = queue.SimpleQueue()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="cortex-sqlite-read")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        writer = self._connect()
        with _wrap("create the schema"):
            writer.execute("PRAGMA journal_mode=WAL")
            # a file already at the latest schema needs no write lock: a process starting while the
            # gateway writes (a replica woken by a request) does not wait for it
            if up_to_date is None or not up_to_date(writer):
                writer.execute("BEGIN IMMEDIATE")
                try:
                    migrate(writer)
                except BaseException:
                    writer.execute("ROLLBACK")
                    raise
                writer.execute("COMMIT")
            # from now on the writer thread waits for the lock itself (see _begin)
            writer.execute("PRAGMA busy_timeout=0")
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer,), name="cortex-sqlite-write", daemon=True
        )
        self._writer.start()
        # the event loop's own connections: they never wait for a lock, and never checkpoint
        self._loop_writer = self._connect(timeout=0.0)
        self._loop_writer.execute("PRAGMA wal_autocheckpoint=0")
        self._loop_reader = self._connect(timeout=0.0)
        self._loop_writer_lock = threading.Lock()
        self._loop_reader_lock = threading.Lock()
        #: per event loop, the writes asked for during this turn of it
        self._turn: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        #: writes with the writer thread and not settled yet (while any are, new writes join them)
        self._queued = 0
        self._loop_commits = 0

    def _connect(self, timeout: float | None = None) -> sqlite3.Connection:
        timeout = self.busy_timeout if timeout is None else timeout
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the SQLite database {self.path}: {exc}") from exc
        # NORMAL in WAL mode survives a killed process (not a power loss) and costs 5x less than FULL
        conn.execute("PRAGMA synchronous=NORMAL")
        # what a delete or an update frees is overwritten with zeros: a swept payload, result or
        # header cannot be read back from the file (the WAL's copies go with scrub's checkpoint)
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._connections.append(conn)
        return conn

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction (shared with other waiting writes); return its result."""
        if self._closed:
            raise BackendError(f"the SQLite database {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, future, loop)
        if self._queued:  # the writer thread is busy: join its next batch
            self._to_writer([job])
        elif (turn := self._turn.get(loop)) is not None:
            turn.append(job)
        else:
            self._turn[loop] = [job]
            loop.call_soon(self._commit_turn, loop)
        return await future

    def _to_writer(self, batch: list[_Job]) -> None:
        self._queued += len(batch)
        self._jobs.put(batch)

    def _commit_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the writes of the last turn of ``loop`` now, or hand them to the writer thread."""
        batch = self._turn.pop(loop, None)
        if batch is None:  # closed meanwhile: the writer thread took them
            return
        if self._queued or not self._loop_writer_lock.acquire(blocking=False):
            self._to_writer(batch)
            return
        try:
            results = self._commit(self._loop_writer, batch, wait=False)
        finally:
            self._loop_writer_lock.release()
        if results is None:  # another process holds the write lock
            self._to_writer(batch)
            return
        _settle(batch, results)
        self._loop_commits += 1
        if self._loop_commits % _CHECKPOINT_EVERY == 0:
            self._jobs.put(_Checkpoint())

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job], *, wait: bool) -> list[Result] | None:
        """Run ``batch`` in one transaction; None (nothing done) if ``wait`` is False and the lock is taken."""
        try:
            if not _begin(conn, wait=wait, timeout=self.busy_timeout):
                return None
            try:
                # optimistic: no savepoint per write; should one fail, the batch runs again with them
                results: list[Result] = [(job.fn(conn), None) for job in batch]
            except Exception:
                conn.execute("ROLLBACK")
                if not _begin(conn, wait=wait, timeout=self.busy_timeout):
                    return None
                results = [self._run_isolated(conn, job) for job in batch]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if not wait and isinstance(exc, sqlite3.OperationalError) and _busy(exc):
                return None
            error = BackendError(f"SQLite write to {self.path} failed: {exc}")
            error.__cause__ = exc
            return [(None, error)] * len(batch)
        return results

    @staticmethod
    def _run_isolated(conn: sqlite3.Connection, job: _Job) -> Result:
        """One write in its own savepoint, so that its failure does not undo the others."""
        conn.execute("SAVEPOINT job")
        try:
            result: Result = (job.fn(conn), None)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            result = (None, _as_backend_error(exc))
        conn.execute("RELEASE job")
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader connection (a consistent snapshot); return its result."""
        if self._closed:
            raise BackendError(f"the SQLite database {self.path} is closed")
        if self._loop_reader_lock.acquire(blocking=False):
            try:
                with _wrap("read"):
                    return fn(self._loop_reader)
            except BackendError as exc:
                if not isinstance(exc.__cause__, sqlite3.OperationalError) or not _busy(exc.__cause__):
                    raise
            finally:
                self._loop_reader_lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        with _wrap("read"):
            return fn(conn)

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            batch: list[_Job] = []
            stop = checkpoint = truncate = False
            item = self._jobs.get()
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Checkpoint):
                    checkpoint = True
                    truncate = truncate or item.truncate
                else:
                    batch += item
                if stop or len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(conn, batch)
            if checkpoint:
                self._checkpoint(conn, truncate=truncate)
            if stop:
                return

    def scrub(self) -> None:
        """Checkpoint and empty the WAL file soon (on the writer thread), so that deleted rows leave no copy there.

        With ``secure_delete`` on, SQLite zeroes what a delete frees in the database file; the WAL
        keeps the older page images until it is truncated.
        """
        self._jobs.put(_Checkpoint(truncate=True))

    def _checkpoint(self, conn: sqlite3.Connection, *, truncate: bool = False) -> None:
        try:
            wal_size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            wal_size = 0
        try:
            if truncate or wal_size > _WAL_LIMIT:  # this one waits (a little) for the readers and writers of the moment
                conn.execute(f"PRAGMA busy_timeout={int(_TRUNCATE_WAIT_S * 1000)}")
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.execute("PRAGMA busy_timeout=0")
            else:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint of %s failed (will retry): %s", self.path, exc)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results = self._commit(conn, batch, wait=True)
        assert results is not None  # waiting, a busy lock is an error, not a miss
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[_Job], list[Result]]] = {}
        for job, result in zip(batch, results, strict=True):
            jobs, outcomes = by_loop.setdefault(job.loop, ([], []))
            jobs.append(job)
            outcomes.append(result)
        for loop, (jobs, outcomes) in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(self._settle_from_writer, jobs, outcomes)

    def _settle_from_writer(self, jobs: list[_Job], outcomes: list[Result]) -> None:
        self._queued -= len(jobs)
        _settle(jobs, outcomes)

    def close(self) -> None:
        """Finish the waiting writes, then close every connection."""
        if self._closed:
            return
        self._closed = True
        for loop, batch in list(self._turn.items()):  # asked for, not yet committed: the writer thread takes them
            del self._turn[loop]
            self._jobs.put(batch)
        self._jobs.put(None)
        self._writer.join()
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


def _begin(conn: sqlite3.Connection, *, wait: bool, timeout: float = BUSY_TIMEOUT_S) -> bool:
    """``BEGIN IMMEDIATE``; False if another connection holds the write lock and ``wait`` is False.

    Waiting, it tries again every 0.2-1 ms (jittered) for up to ``timeout`` seconds: SQLite's
    own busy handler sleeps 1, 2, 5 ... up to 100 ms between tries, so a process that once found
    the lock taken kept losing it to one that commits back to back.
    """
    deadline: float | None = None
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            if not wait:
                return False
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now > deadline:
                raise
            time.sleep(random.uniform(0.0002, 0.001))


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in _BUSY_CODES


def _as_backend_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        error = BackendError(f"SQLite error: {exc}")
        error.__cause__ = exc
        return error
    return exc


@contextlib.contextmanager
def _wrap(action: str) -> Any:
    try:
        yield
    except sqlite3.Error as exc:
        raise BackendError(f"SQLite {action} failed: {exc}") from exc


async def open_database(url: str, resources: Resources) -> SqliteDatabase:
    """The process's one handle on the SQLite file of ``sqlite:///path``, with every embedded table.

    ``?busy_timeout=<seconds>`` (default :data:`BUSY_TIMEOUT_S`) bounds the wait for another
    process's write lock; the first URL to open a file sets it for the process.

    Raises:
        BackendError: the file cannot be opened, or ``busy_timeout`` is invalid.
    """
    path = local_path(url).resolve()
    busy_timeout = BUSY_TIMEOUT_S
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name != "busy_timeout":
            continue
        try:
            busy_timeout = float(value)
        except ValueError:
            busy_timeout = -1.0
        if not 0 < busy_timeout < 86400:
            raise BackendError(f"invalid busy_timeout {value!r} in {url}: give seconds, above 0")

    async def create() -> SqliteDatabase:
        return SqliteDatabase(path, migrate, up_to_date=up_to_date, busy_timeout=busy_timeout)

    async def close(db: SqliteDatabase) -> None:
        db.close()

    return await resources.get(f"sqlite:{path}", create, close)
