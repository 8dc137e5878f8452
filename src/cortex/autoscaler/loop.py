"""The autoscaler loop: every tick, for each deployed API, read the queue, decide, scale.

The deciding is :func:`cortex.autoscaler.policy.decide`; this module only gathers its inputs and
carries out its decisions (reference §7, "Registration" and "Each tick"):

- the APIs are the catalog's, re-read every tick: a new API is picked up at the next tick (a
  deploy runs one at once), and a deleted one's samples, history, events and metrics are dropped;
- the autoscaling spec is re-read every tick, so a redeploy's new knobs apply at once; the
  start-up hold counts from the first tick that saw the API, like Cortex's "running" clock;
- ``cur`` is what the runtime was last asked for (:meth:`~cortex.runtime.base.Runtime.requested`);
- each tick takes one sample of :meth:`~cortex.queue.base.Queue.depth` and keeps ``window``
  seconds of them (Cortex's operator set its gauge every 10 s; Prometheus averaged it);
- a change is logged at INFO (``autoscaling event: api X: 1 -> 2 (reason)``), applied with
  :meth:`~cortex.runtime.base.Runtime.scale` and kept for ``cortex describe``;
- what the tick saw of each API (a :class:`Reading`) sets the operator's gauges and is handed to
  ``on_tick`` (the status page keeps its last hour of them).

Waking early: the gateway runs in another process, so a submit reaches the loop only through
the queue. Between ticks the loop watches the queue of every API at zero replicas with nothing
queued (:mod:`cortex.autoscaler.sleepers`): the backend's announcement of an enqueue runs the next
tick at once, so a sleeping API is woken within a moment of its first request, whatever the tick.
:meth:`Autoscaler.nudge` does the same for whatever in this process learns of new work.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from cortex.autoscaler.events import ScalingEvent, ScalingEvents
from cortex.autoscaler.policy import Decision, History, Sample, decide
from cortex.autoscaler.sleepers import Sleepers
from cortex.errors import CortexError
from cortex.metrics import OperatorMetrics
from cortex.queue.base import Depth, Queue
from cortex.runtime.base import ReplicaState, Runtime
from cortex.spec import ApiSpec, Autoscaling
from cortex.store.base import ApiEntry, Catalog

log = logging.getLogger(__name__)

#: seconds between two ticks, as Cortex's ``spec.AutoscalingTickInterval``
DEFAULT_TICK = 10.0
#: how long :meth:`Autoscaler.aclose` lets a running tick finish before cancelling it
CLOSE_TIMEOUT = 10.0

_READY = (ReplicaState.READY, ReplicaState.READY_OUT_OF_DATE)


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What one tick saw of one API: its queue, and its replicas once the tick had scaled."""

    api: str
    depth: Depth
    requested: int
    ready: int


#: told, after each tick, what it saw of every API whose queue it could read
TickListener = Callable[[list[Reading]], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class _Tracked:
    """What the loop remembers of one API between ticks."""

    started_at: float
    spec_id: str
    autoscaling: Autoscaling
    samples: collections.deque[Sample] = dataclasses.field(default_factory=collections.deque)
    history: History = ()


class Autoscaler:
    """Drives each deployed API's replica count from its queue.

    Args:
        catalog: Where the deployed APIs and their specs are read, every tick.
        queue: Whose :meth:`~cortex.queue.base.Queue.depth` is sampled.
        runtime: Asked for ``requested`` and told to ``scale``.
        interval: Seconds between two ticks.
        events: Where autoscaling events are kept for ``cortex describe``.
        metrics: The gauges set every tick.
        clock: Monotonic seconds, for the samples, the history and the start-up hold.
        wall_clock: Unix seconds, for the events' times.
        on_tick: Awaited after each tick with its readings; a failure is logged, never fatal.
    """

    def __init__(
        self,
        catalog: Catalog,
        queue: Queue,
        runtime: Runtime,
        *,
        interval: float = DEFAULT_TICK,
        events: ScalingEvents | None = None,
        metrics: OperatorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_tick: TickListener | None = None,
        wake_sleeping: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the autoscaler's tick must be > 0 seconds (got {interval})")
        self.catalog = catalog
        self.queue = queue
        self.runtime = runtime
        self.interval = interval
        self.events = events if events is not None else ScalingEvents()
        self.metrics = metrics if metrics is not None else OperatorMetrics()
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_tick = on_tick
        self._apis: dict[str, _Tracked] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleepers = Sleepers(queue, lambda _api: self.nudge())
        self._wake_sleeping = wake_sleeping

    def start(self) -> None:
        """Tick in the background, the first tick now, until :meth:`aclose`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="autoscaler")

    def nudge(self) -> None:
        """Run the next tick now instead of at its time (new work is known to have arrived)."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop ticking; a tick under way gets :data:`CLOSE_TIMEOUT` seconds to finish."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(task, CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("autoscaler: a tick did not finish within %gs; cancelled", CLOSE_TIMEOUT)
        await self._sleepers.aclose()

    @property
    def sleeping(self) -> set[str]:
        """The APIs at zero replicas whose queues the running loop watches for a first request."""
        return self._sleepers.watched

    async def tick(self) -> list[Reading]:
        """One pass over every deployed API: sample, decide, scale, set the gauges, tell ``on_tick``.

        Returns what it saw of each API whose queue it could read.
        """
        entries = await self.catalog.list_apis()
        deployed = {entry.name for entry in entries}
        for name in set(self._apis) - deployed:
            self._forget(name)
        gathered = await asyncio.gather(*(self._tick_guarded(entry) for entry in entries))
        readings = [reading for reading in gathered if reading is not None]
        if self._on_tick is not None:
            try:
                await self._on_tick(readings)
            except Exception:  # what watches the ticks must not stop them
                log.exception("autoscaler: the tick listener failed")
        return readings

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            began = loop.time()
            self._wake.clear()
            try:
                readings = await self.tick()
            except Exception:  # a failed pass (the catalog unreachable) must not end autoscaling
                log.exception("autoscaler: tick failed")
            else:
                # asleep: at zero with nothing queued (with work queued, the tick just woke it, or
                # could not, and the next tick tries again: watching it would only spin)
                asleep = (r.api for r in readings if r.requested == 0 and r.depth.total == 0)
                self._sleepers.watch(asleep if self._wake_sleeping else ())
            delay = self.interval - (loop.time() - began)
            if delay > 0:
                await _first_of(self._stop, self._wake, timeout=delay)

    async def _tick_guarded(self, entry: ApiEntry) -> Reading | None:
        try:
            return await self._tick_api(entry)
        except Exception:  # one API's failure must not stop the others from scaling
            log.exception("autoscaler: api %s: tick failed", entry.name)
            return None

    async def _tick_api(self, entry: ApiEntry) -> Reading | None:
        name = entry.name
        tracked = self._track(entry)
        try:
            depth = await self.queue.depth(name)
        except CortexError as exc:  # Cortex too skips a tick whose metrics are missing
            log.warning("autoscaler: api %s: could not read the queue; skipping this tick: %s", name, exc)
            return None
        now = self._clock()
        window = tracked.autoscaling.window
        tracked.samples.append(Sample(now, depth.queued, depth.in_flight))
        while tracked.samples[0].at <= now - window:
            tracked.samples.popleft()
        current = self.runtime.requested(name)
        decision, tracked.history = decide(
            tracked.autoscaling, current, tracked.samples, tracked.history, now=now, started_at=tracked.started_at
        )
        log.debug(
            "autoscaler tick: api %s: avg %s, raw %s, recommendation %s, %d -> %d (%s)",
            name,
            decision.avg_in_flight,
            decision.raw,
            decision.recommendation,
            decision.current,
            decision.request,
            decision.reason,
        )
        if decision.changed:
            await self._scale(name, decision)
        return self._observe(name, depth)

    def _track(self, entry: ApiEntry) -> _Tracked:
        """The API's remembered state, created at its first tick; the spec re-read when it changed."""
        tracked = self._apis.get(entry.name)
        if tracked is not None and tracked.spec_id == entry.spec_id:
            return tracked
        autoscaling = ApiSpec.from_dict(entry.spec).autoscaling
        if tracked is None:
            tracked = self._apis[entry.name] = _Tracked(self._clock(), entry.spec_id, autoscaling)
        else:  # redeployed: as in Cortex, the history and the start-up clock carry on
            tracked.spec_id, tracked.autoscaling = entry.spec_id, autoscaling
        return tracked

    async def _scale(self, name: str, decision: Decision) -> None:
        decided_at = self._wall_clock()  # the event's time: when it was decided, not when replicas started
        try:
            await self.runtime.scale(name, decision.request)
        except CortexError as exc:  # deleted or not applied yet: the next tick decides again
            log.warning("autoscaler: api %s: could not scale to %d: %s", name, decision.request, exc)
            return
        log.info("autoscaling event: api %s: %d -> %d (%s)", name, decision.current, decision.request, decision.reason)
        self.events.record(name, ScalingEvent(decided_at, decision.current, decision.request, decision.reason))

    def _observe(self, name: str, depth: Depth) -> Reading:
        reading = Reading(
            name, depth, self.runtime.requested(name), sum(r.state in _READY for r in self.runtime.replicas(name))
        )
        self.metrics.observe(name, depth, requested=reading.requested, ready=reading.ready)
        return reading

    def _forget(self, name: str) -> None:
        del self._apis[name]
        self.events.forget(name)
        self.metrics.forget(name)
        log.info("autoscaler: api %s: stopped autoscaling (deleted)", name)


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters)
