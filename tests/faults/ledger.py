"""The fault suite's ledger: a steady load at 80% of measured capacity, and what every answer must be.

The load is sized in the test's own warm-up (:func:`measure_capacity`: a burst through the whole
cluster, timed until every request has completed), not hard-coded, so a busy machine gets a
lighter load and the queue never grows without bound. Each submission carries a payload of its
own; every fourth one is followed by a status read of an acknowledged id, so status answers meet
the faults too. The ledger then holds the test to the contract (DESIGN §4):

- every acknowledged id is unique, and ends ``completed`` with its own id and its own payload in
  the result the user server echoed back; none is ``failed`` or ``cancelled``, none unknown;
- no answer is a ``500``; a ``503`` (or no answer at all) is allowed only while an outage window
  that the test declared (:meth:`Ledger.outage`) was open, and each window closes once a submission
  is acknowledged again, which is its recovery time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx

TERMINAL = ("completed", "failed", "cancelled")
#: seconds the user server takes per request (kills and cuts find some running)
WORK_SECONDS = 0.2
#: the share of the measured capacity that the load submits
LOAD_SHARE = 0.8
#: an answer may arrive this long after its outage window closed (it was sent while it was open)
SLACK = 1.0
#: the client's timeout: longer than any deadline the gateway promises for a 503
CLIENT_TIMEOUT = 10.0


def payload(n: int) -> dict[str, Any]:
    return {"n": n, "token": secrets.token_hex(8), "sleep": WORK_SECONDS}


async def measure_capacity(endpoint: str, burst: int = 64, timeout: float = 30.0) -> float:
    """Requests per second the cluster completes: ``burst`` submitted at once, timed until all completed."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        began = time.monotonic()
        answers = await asyncio.gather(*(client.post(endpoint, json=payload(-n)) for n in range(burst)))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:3]
        waiting = {a.json()["id"] for a in answers}
        deadline = began + timeout
        while waiting:
            assert time.monotonic() < deadline, f"{len(waiting)} of the warm-up burst not completed in {timeout}s"
            await asyncio.sleep(0.05)
            looks = await asyncio.gather(*(client.get(f"{endpoint}/{rid}") for rid in waiting))
            waiting -= {look.json()["id"] for look in looks if look.json().get("status") == "completed"}
        return burst / (time.monotonic() - began)


@dataclasses.dataclass
class Window:
    name: str
    start: float
    end: float = float("inf")
    #: seconds from the end of the fault until a submission was acknowledged again
    recovery: float = float("nan")


@dataclasses.dataclass
class Answer:
    """One answer that is an error: its status (0: no answer), the request, and when it was sent and answered."""

    status: int
    what: str
    sent: float
    answered: float
    detail: str


@dataclasses.dataclass
class Ledger:
    """Submits at ``rate`` per second until stopped, and keeps account of every answer."""

    endpoint: str
    rate: float
    capacity: float = 0.0
    #: every acknowledged id, with the payload it was sent with
    acknowledged: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: ids the gateway handed out twice
    duplicates: list[str] = dataclasses.field(default_factory=list)
    #: the status codes of every answer, submissions and status reads alike (0: no answer)
    answers: Counter[int] = dataclasses.field(default_factory=Counter)
    errors: list[Answer] = dataclasses.field(default_factory=list)
    windows: list[Window] = dataclasses.field(default_factory=list)
    submitted: int = 0
    began: float = 0.0
    loaded: float = 0.0
    _acked: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @classmethod
    async def sized(cls, endpoint: str) -> Ledger:
        """A ledger whose rate is :data:`LOAD_SHARE` of the capacity measured now."""
        capacity = await measure_capacity(endpoint)
        return cls(endpoint, rate=LOAD_SHARE * capacity, capacity=capacity)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The load runs while the block does; it stops (waiting for answers in flight) when the block ends."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._run(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    @contextlib.asynccontextmanager
    async def outage(self, name: str, recovery_timeout: float = 30.0) -> AsyncIterator[Window]:
        """An outage window: open while the block injects and heals the fault, closed on the next acknowledgement."""
        window = Window(name, time.monotonic())
        self.windows.append(window)
        yield window
        healed = time.monotonic()
        self._acked.clear()
        try:
            await asyncio.wait_for(self._acked.wait(), recovery_timeout)
        except TimeoutError:
            raise AssertionError(f"nothing acknowledged within {recovery_timeout}s after healing {name}") from None
        window.end = time.monotonic()
        window.recovery = window.end - healed

    async def _run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.began = started = loop.time()
        pending: set[asyncio.Task[None]] = set()
        limit = asyncio.Semaphore(64)  # a hung gateway must not pile up unbounded submissions
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_connections=64)) as client:
            while not stop.is_set():
                self.submitted += 1
                task = asyncio.create_task(self._submit(client, limit, self.submitted))
                pending.add(task)
                task.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, started + self.submitted / self.rate - loop.time()))
            self.loaded = loop.time() - started
            await asyncio.gather(*pending)

    async def _call(
        self, client: httpx.AsyncClient, limit: asyncio.Semaphore, what: str, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        async with limit:
            sent = time.monotonic()
            try:
                response = await client.request(method, url, **kw)
            except httpx.TransportError as exc:
                self.answers[0] += 1
                self.errors.append(Answer(0, what, sent, time.monotonic(), repr(exc)))
                return None
        self.answers[response.status_code] += 1
        if response.status_code != 200:
            self.errors.append(Answer(response.status_code, what, sent, time.monotonic(), response.text[:200]))
            return None
        return response

    async def _submit(self, client: httpx.AsyncClient, limit: asyncio.Semaphore, n: int) -> None:
        sent = payload(n)
        response = await self._call(client, limit, "submit", "POST", self.endpoint, json=sent)
        if response is not None:
            rid = response.json()["id"]
            if rid in self.acknowledged:
                self.duplicates.append(rid)
            self.acknowledged[rid] = sent
            self._acked.set()
        if n % 4 == 0 and self.acknowledged:
            rid = random.choice(list(self.acknowledged))
            await self._call(client, limit, "status", "GET", f"{self.endpoint}/{rid}")

    @staticmethod
    def inside(answer: Answer, window: Window) -> bool:
        """Whether ``answer`` was pending while ``window`` was open (or sent just as it closed)."""
        return answer.answered >= window.start and answer.sent <= window.end + SLACK

    def misplaced(self) -> list[Answer]:
        """Error answers outside every outage window, and every 500 (or other error) wherever it falls."""
        return [a for a in self.errors if a.status not in (0, 503) or not any(self.inside(a, w) for w in self.windows)]

    async def outcomes(self, timeout: float) -> dict[str, dict[str, Any]]:
        """The final status of every acknowledged request, once each has one (polled, at most ``timeout`` s)."""
        final: dict[str, dict[str, Any]] = {}
        waiting = list(self.acknowledged)
        deadline = time.monotonic() + timeout
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:

            async def look(rid: str) -> None:
                async with limit:
                    response = await client.get(f"{self.endpoint}/{rid}")
                data: dict[str, Any] = response.json()
                if response.status_code == 404 or data.get("status") in TERMINAL:
                    final[rid] = {"http": response.status_code, **data}

            while waiting:
                await asyncio.gather(*(look(rid) for rid in waiting))
                waiting = [rid for rid in waiting if rid not in final]
                if waiting and time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        return final


@dataclasses.dataclass
class Verdict:
    """What became of the acknowledged requests: counted for the figures, then asserted."""

    ledger: Ledger
    outcomes: dict[str, dict[str, Any]]
    runs: Counter[str]

    @property
    def statuses(self) -> Counter[str]:
        return Counter(str(data.get("status", "unknown")) for data in self.outcomes.values())

    @property
    def lost(self) -> list[str]:
        never = set(self.ledger.acknowledged) - set(self.outcomes)
        unknown = {rid for rid, data in self.outcomes.items() if data["http"] == 404}
        return sorted(never | unknown)

    @property
    def wrong(self) -> dict[str, Any]:
        """Completed requests whose result is not the user server's answer to their own id and payload."""
        acknowledged = self.ledger.acknowledged
        return {
            rid: data["result"]
            for rid, data in self.outcomes.items()
            if data.get("status") == "completed"
            and (data["result"]["request_id"], data["result"]["payload"]) != (rid, acknowledged[rid])
        }

    @property
    def ran_twice(self) -> int:
        return sum(self.runs[rid] > 1 for rid in self.ledger.acknowledged)

    def figures(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "capacity": ledger.capacity,
            "rate": ledger.rate,
            "loaded": ledger.loaded,
            "submitted": ledger.submitted,
            "acknowledged": len(ledger.acknowledged),
            "503": ledger.answers[503],
            "500": ledger.answers[500],
            "unanswered": ledger.answers[0],
            "faults": len(ledger.windows),
            "windows": [
                {
                    "name": w.name,
                    "seconds": w.end - w.start,
                    "recovery": w.recovery,
                    "503": sum(a.status == 503 and ledger.inside(a, w) for a in ledger.errors),
                    "unanswered": sum(a.status == 0 and ledger.inside(a, w) for a in ledger.errors),
                }
                for w in ledger.windows
            ],
            "completed": self.statuses["completed"],
            "lost": len(self.lost),
            "ran_twice": self.ran_twice,
        }

    def check(self) -> None:
        ledger = self.ledger
        assert not ledger.duplicates, f"ids acknowledged twice: {ledger.duplicates[:5]}"
        misplaced = ledger.misplaced()
        assert not misplaced, f"{len(misplaced)} error answer(s) outside the outage windows or not 503: {misplaced[:5]}"
        assert not self.lost, f"{len(self.lost)} acknowledged request(s) lost, e.g. {self.lost[:5]}"
        assert not self.wrong, f"{len(self.wrong)} result(s) not the answer to their own request: {self.wrong}"
        others = {rid: data for rid, data in self.outcomes.items() if data.get("status") != "completed"}
        assert not others, f"{len(others)} acknowledged request(s) not completed: {list(others.items())[:5]}"
        unrun = sorted(rid for rid in self.outcomes if not self.runs[rid])
        assert not unrun, f"{len(unrun)} request(s) completed without the user server running them: {unrun[:5]}"
