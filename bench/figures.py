"""The headline figures (medians over the runs), their ratios to each baseline, and the goals of issue 5."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.profile import RATE
from bench.stats import latency_summary, median


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure, its baseline, and the goal it answers to."""

    scenario: str
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


def rows(results: dict[str, Any]) -> list[Row]:
    """Every row of the table, from the raw results."""
    table: list[Row] = []
    if "submit" in results:
        table += _submit(results["submit"])
    if "e2e" in results:
        table += _e2e(results["e2e"])
    if "dispatch" in results:
        table += _dispatch(results["dispatch"])
    if "diy" in results:
        table += _diy(results["diy"])
    if "waiters" in results:
        table += _waiters(results["waiters"])
    if "keepalive" in results:
        table += _keepalive(results["keepalive"])
    if "backends" in results:
        table += _backends(results["backends"])
    return table


def _submit(raw: dict[str, Any]) -> list[Row]:
    runs = raw["runs"]
    cortex = median([r["cortex"]["requests_per_s"] for r in runs])
    bare = median([r["bare"]["requests_per_s"] for r in runs])
    ratio = median([r["ratio"] for r in runs])
    memory = raw["gateway_rss_mb"]
    return [
        Row("a", "submit throughput, POST 1 KiB, wrk -t1 -c64", cortex, "req/s", "bare Starlette/uvicorn", bare,
            ratio, "&ge; 0.5x bare", ratio >= 0.5),
        Row("a", "submit latency p99 under that load", median([r["cortex"]["p99_ms"] for r in runs]), "ms",
            "bare Starlette/uvicorn", median([r["bare"]["p99_ms"] for r in runs])),
        Row("e", "gateway RSS idle", memory["idle"], "MB"),
        Row("e", "gateway RSS under submit load (peak)", memory["under_load_peak"], "MB"),
        Row("e", "gateway RSS after load", memory["after_load"], "MB"),
    ]  # fmt: skip


def _e2e(raw: dict[str, Any]) -> list[Row]:
    runs = raw["runs"]
    out = []
    for label, what, goals in (
        ("one", "one request in flight", {"p50": 5.0, "p99": 25.0}),
        ("load", f"{raw['clients']} concurrent clients", {}),
    ):
        for q in ("p50", "p99"):
            overhead = median([r[label][f"overhead_{q}_ms"] for r in runs])
            direct = median([r[label]["direct"][f"{q}_ms"] for r in runs])
            cortex = median([r[label]["cortex"][f"{q}_ms"] for r in runs])
            limit = goals.get(q)
            out.append(
                Row("b", f"overhead {q}, {what} (round trip {cortex:.2f} ms)", overhead, "ms",
                    f"direct call {q}", direct, None,
                    "" if limit is None else f"&le; {limit:g} ms", None if limit is None else overhead <= limit)
            )  # fmt: skip
    return out


def _dispatch(raw: dict[str, Any]) -> list[Row]:
    runs = raw["runs"]
    rate = median([r["completions_per_s"] for r in runs])
    steady = median([r["steady_completions_per_s"] for r in runs])
    dequeuer = median([max(r["dequeuer_rss_mb"]) for r in runs])
    idle = median([max(r.get("dequeuer_idle_rss_mb") or [float("nan")]) for r in runs])
    peak = median([max(r["dequeuer_peak_rss_mb"]) for r in runs])
    where = f"{raw['replicas']} replicas x max_concurrency {raw['max_concurrency']}"
    return [
        Row("c", f"dispatch throughput, {where}", rate, "completions/s", goal="&ge; 1,500/s", met=rate >= 1500),
        Row("c", "dispatch throughput, middle 80% of the drain", steady, "completions/s"),
        Row("e", "dequeuer RSS per replica after the drain (largest)", dequeuer, "MB", goal="< 60 MB",
            met=dequeuer < 60),
        Row("e", "dequeuer peak RSS (VmHWM, largest)", peak, "MB"),
        Row("e", "dequeuer RSS idle, probes running, before its first request (largest)", idle, "MB"),
    ]  # fmt: skip


#: each stack's own blocking wait, as the table names it
WAIT_CALLS = {"celery": "AsyncResult.get()", "rq": "Job.latest_result(timeout=)", "arq": "Job.result()"}


def _diy(raw: dict[str, Any]) -> list[Row]:
    """Each stack beside cortex-async: raw round trips against raw round trips, submit rates at one concurrency.

    The cortex-async figures of a stack's rows were measured in the same run, alternating with the
    stack's. The round trips are whole (submit to result in hand), on both sides: the no-op job runs
    inside the stack's worker, cortex-async's calls a user server over HTTP, and that call is part of
    what a user of either waits for.
    """
    out = []
    for name, stack in raw.items():
        runs = stack["runs"]
        for clients, said in (("1", "one at a time"), ("64", "64 at once")):
            theirs = [r["submits_per_s"][clients] for r in runs if clients in r["submits_per_s"]]
            mine = [r["cortex_submits_per_s"][clients] for r in runs if clients in r.get("cortex_submits_per_s", {})]
            if theirs:
                base = median(mine) if mine else None
                out.append(
                    Row("d", f"{name}: submit rate, {said} (its own client)", median(theirs), "jobs/s",
                        f"cortex-async, aiohttp, {said}", base, None if base is None else median(theirs) / base)
                )  # fmt: skip
        for key, how, ours_key, ours_name in (
            ("round_trip_s", "polling every 1 ms", "cortex", "cortex-async polling beside it"),
            ("wait_round_trip_s", f"its blocking wait, {WAIT_CALLS.get(name, '')}", "cortex_post_wait",
             "cortex-async POST with Prefer: wait beside it"),
        ):  # fmt: skip
            for q in ("p50", "p99"):
                value = median([latency_summary(r[key])[f"{q}_ms"] for r in runs])
                ours = median([_ours(r, ours_key)[f"{q}_ms"] for r in runs])
                out.append(Row("d", f"{name}: round trip {q}, {how}", value, "ms", ours_name, ours, value / ours))
    return out + _diy_goals(raw)


def _ours(run: dict[str, Any], key: str) -> dict[str, float]:
    """cortex-async's round-trip percentiles in one (d) run: ``cortex`` (polling), ``cortex_post_wait``, ..."""
    return dict(run[key]["cortex"]) if key == "cortex" else dict(run[key])


def best_of_stacks(raw: dict[str, Any], q: str) -> tuple[float, str, dict[str, float]] | None:
    """The best round trip at ``q`` of any stack either way (polling or its blocking wait): the value, what it
    was, and cortex-async's medians measured beside that stack (``poll``, ``post_wait``, ``get_wait``)."""
    best: tuple[float, str, dict[str, float]] | None = None
    for name, stack in raw.items():
        runs = stack["runs"]
        if "wait_round_trip_s" not in runs[0] or "cortex_post_wait" not in runs[0]:
            continue
        ours = {
            "poll": median([r["cortex"]["cortex"][f"{q}_ms"] for r in runs]),
            "post_wait": median([r["cortex_post_wait"][f"{q}_ms"] for r in runs]),
            "get_wait": median([r["cortex_get_wait"][f"{q}_ms"] for r in runs]),
        }
        for key, how in (("round_trip_s", "polling"), ("wait_round_trip_s", WAIT_CALLS.get(name, "blocking wait"))):
            value = median([latency_summary(r[key])[f"{q}_ms"] for r in runs])
            if best is None or value < best[0]:
                best = (value, f"{name}, {how}", ours)
    return best


#: issue 19: cortex-async's Prefer-wait round trip at most this times the best stack's, at each percentile
WAIT_GOALS = {"p50": 0.5, "p99": 1.0}


def _diy_goals(raw: dict[str, Any]) -> list[Row]:
    out = []
    for q, limit in WAIT_GOALS.items():
        best = best_of_stacks(raw, q)
        if best is None:
            continue
        value, what, ours = best
        out += [
            Row("d", f"cortex-async round trip {q}, POST with Prefer: wait (one exchange)", ours["post_wait"], "ms",
                f"best of Celery, RQ, arq: {what}", value, ours["post_wait"] / value, f"&le; {limit:g}x best",
                ours["post_wait"] <= limit * value),
            Row("d", f"cortex-async round trip {q}, POST then GET with ?wait=", ours["get_wait"], "ms",
                f"best of Celery, RQ, arq: {what}", value, ours["get_wait"] / value),
            Row("d", f"cortex-async round trip {q}, POST then GET polling every 1 ms", ours["poll"], "ms",
                f"best of Celery, RQ, arq: {what}", value, ours["poll"] / value),
        ]  # fmt: skip
    return out


#: issue 19: 1,000 idle waiters add under this much of one core to the gateway's CPU
WAITERS_GOAL = 0.05


def _waiters(raw: dict[str, Any]) -> list[Row]:
    runs = raw["runs"]
    idle = median([r["idle_cpu"] for r in runs])
    waiting = median([r["waiting_cpu"] for r in runs])
    added = median([r["waiting_cpu"] - r["idle_cpu"] for r in runs])
    held = median([r["waiting"] for r in runs])
    n = raw["waiters"]
    return [
        Row("w", f"gateway CPU with {n:,} idle waiters (GET ?wait=60), % of one core", waiting * 100, "%",
            "the same gateway idle", idle * 100),
        Row("w", f"gateway CPU added by {n:,} idle waiters, % of one core", added * 100, "%", goal="&lt; 5%",
            met=added < WAITERS_GOAL),
        Row("w", "gateway CPU per waiting client", added / max(held, 1) * 1e6, "µs/s"),
    ]  # fmt: skip


def _keepalive(raw: dict[str, Any]) -> list[Row]:
    runs = raw["runs"]
    out = []
    for q in ("p50", "p99"):
        on = median([r["quickack"][f"{q}_ms"] for r in runs])
        off = median([r["without"][f"{q}_ms"] for r in runs])
        direct = median([r["direct"][f"{q}_ms"] for r in runs])
        out += [
            Row("k", f"two-write server (http.server, HTTP/1.1), round trip {q}, Prefer: wait, with TCP_QUICKACK",
                on, "ms", "the same without it", off, on / off),
            Row("k", f"the same server called directly, kept-alive aiohttp client, {q}", direct, "ms"),
        ]  # fmt: skip
    return out


def _backends(raw: dict[str, Any]) -> list[Row]:
    """Each backend's overhead and dispatch rate, beside the embedded SQLite's from the same run."""
    figures = {
        name: {
            "p50": median([r["one"]["overhead_p50_ms"] for r in backend["runs"]]),
            "p99": median([r["one"]["overhead_p99_ms"] for r in backend["runs"]]),
            "rate": median([r["completions_per_s"] for r in backend["runs"]]),
        }
        for name, backend in raw["backends"].items()
    }
    base = figures.get("sqlite")
    where = f"{raw['replicas']} replicas x max_concurrency {raw['max_concurrency']}, {raw['requests']:,} requests"
    out = []
    for name, values in figures.items():
        for key, figure, unit in (
            ("p50", "overhead p50, one request in flight", "ms"),
            ("p99", "overhead p99, one request in flight", "ms"),
            ("rate", f"dispatch throughput, {where}, drain read from the queue", "completions/s"),
        ):
            baseline = None if base is None or name == "sqlite" else base[key]
            out.append(
                Row("f", f"{name}: {figure}", values[key], unit, "" if baseline is None else "SQLite (embedded)",
                    baseline, None if baseline is None else values[key] / baseline)
            )  # fmt: skip
    return out


#: issue 15's targets for (f): each backend's dispatch rate at least this times SQLite's, in the same run
TARGETS = {"redis": 1.0, "postgres": 0.6}
#: the kinds of process whose CPU (f) accounts for, in the order shown
_PROCESSES = ("gateway", "dequeuers", "user servers", "database server", "harness")


def drain_profile(results: dict[str, Any]) -> list[str]:
    """The (f) drains' accounting and the sampled dequeuer, as Markdown (empty without profiles)."""
    raw = results.get("backends", {}).get("backends", {})
    names = [name for name, backend in raw.items() if "profile" in backend["runs"][0]]
    if not names:
        return []
    facts = profile_facts(results)
    counters = sorted(
        {key for name in names for r in raw[name]["runs"] for key in r["profile"]["server_per_completion"]}
    )
    lines = [
        "## Where a drain's time goes (scenario f)",
        "",
        "Medians over the measured drains of (f), per completion; the database server's CPU and counters are",
        "the whole server's (other sessions on the shared machine included). The sampled drain is an extra one",
        f"(a quarter of the requests) with py-spy attached to one dequeuer at {RATE} samples/s; its rate is not",
        "in the table above.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| dispatch, completions/s | " + " | ".join(facts[f"{n}.rate"] for n in names) + " |",
        "| preload, submits/s (32 clients at once) | " + " | ".join(facts[f"{n}.submits"] for n in names) + " |",
        "| machine busy, cores | " + " | ".join(f"{facts[f'{n}.busy']} of {facts[f'{n}.cores']}" for n in names) + " |",
        *(
            f"| CPU ms per completion: {proc} | " + " | ".join(facts[f"{n}.cpu.{proc}"] for n in names) + " |"
            for proc in (*_PROCESSES, "all of these")
        ),
        *(
            f"| server {key} per completion | " + " | ".join(facts.get(f"{n}.server.{key}", "") for n in names) + " |"
            for key in counters
        ),
        "| round trip alone, writing nothing / committing one row, ms | "
        + " | ".join(
            f"{facts[f'{n}.rt.read_ms']} / {facts[f'{n}.rt.commit_ms']}" if f"{n}.rt.read_ms" in facts else ""
            for n in names
        )
        + " |",
        "| sampled drain, completions/s | " + " | ".join(facts[f"{n}.sampled.rate"] for n in names) + " |",
        "| sampled dequeuer: busy (samples / rate / time) | "
        + " | ".join(facts.get(f"{n}.sampled.busy", "") for n in names)
        + " |",
    ]
    categories: list[str] = []
    for n in names:
        for key in raw[n]["sampled"]["profile"].get("one_dequeuer_sampled", {}).get("categories", {}):
            if key not in categories:
                categories.append(key)
    lines += [
        f"| sampled dequeuer: {key} | " + " | ".join(facts.get(f"{n}.sampled.{key}", "") for n in names) + " |"
        for key in categories
    ]
    lines += ["", "Functions with the most samples of their own in the sampled dequeuer:", ""]
    for n in names:
        top = raw[n]["sampled"]["profile"].get("one_dequeuer_sampled", {}).get("top_functions", [])
        lines.append(f"- {n}: " + "; ".join(f"`{func}` {share:.0%}" for func, share in top[:6]))
    return [*lines, ""]


def profile_facts(results: dict[str, Any]) -> dict[str, str]:
    """Named, formatted figures of (f), for the tables and for ``{{name}}`` in bench/notes.md."""
    raw = results.get("backends", {}).get("backends", {})
    facts: dict[str, str] = {}
    rates: dict[str, float] = {}
    totals: dict[str, float] = {}
    for n, backend in raw.items():
        runs = backend["runs"]
        rates[n] = median([r["completions_per_s"] for r in runs])
        facts[f"{n}.rate"] = f"{rates[n]:,.0f}"
        facts[f"{n}.runs"] = ", ".join(f"{r['completions_per_s']:,.0f}" for r in runs)
        facts[f"{n}.p50"] = f"{median([r['one']['overhead_p50_ms'] for r in runs]):.2f}"
        facts[f"{n}.submits"] = f"{median([r['preload_submits_per_s'] for r in runs]):,.0f}"
        if "profile" not in runs[0]:
            continue
        profiles = [r["profile"] for r in runs]
        facts[f"{n}.busy"] = f"{median([p['machine_busy_cores'] for p in profiles]):.2f}"
        facts[f"{n}.cores"] = f"{median([p['machine_cores'] for p in profiles]):.1f}"
        for proc in _PROCESSES:
            facts[f"{n}.cpu.{proc}"] = f"{median([p['cpu_ms_per_completion'][proc] for p in profiles]):.3f}"
        total = [sum(p["cpu_ms_per_completion"][proc] for proc in _PROCESSES) for p in profiles]
        facts[f"{n}.cpu.all of these"] = f"{median(total):.3f}"
        cores = [r["completions_per_s"] * spent / 1000 for r, spent in zip(runs, total, strict=True)]
        facts[f"{n}.ours"] = f"{median(cores):.2f}"  # cores that cortex, its user servers and the server kept busy
        totals[n] = median(total)
        for key in {k for p in profiles for k in p["server_per_completion"]}:
            facts[f"{n}.server.{key}"] = f"{median([p['server_per_completion'].get(key, 0.0) for p in profiles]):.3f}"
        facts |= _server_and_sampled(n, backend)
    for n in rates:
        if "sqlite" in rates and n != "sqlite":
            facts[f"{n}.ratio"] = f"{rates[n] / rates['sqlite']:.2f}x"
            if n in TARGETS:
                met = rates[n] / rates["sqlite"] >= TARGETS[n]
                facts[f"{n}.target"] = f"{'reached' if met else 'missed'} its target of {TARGETS[n]:.1f}x"
            if "sqlite" in totals and n in totals:
                # the ratio the rates would have if only CPU limited them: SQLite's CPU per completion over this one's
                facts[f"{n}.cpu_ratio"] = f"{totals['sqlite'] / totals[n]:.2f}x"
    machine = results.get("machine", {})
    start = machine.get("load average (1 min) at start", "?")
    whole = f"{machine.get('date', '?')}, load average (1 min) {start} at start"
    facts["f.load"] = str(machine.get("(f) rerun", whole))
    # the figures a rerun replaced, and snapshots kept by name (``baseline:<what>``: merges carry them along)
    earlier = {"previous": results.get("previous", {})}
    earlier |= {key: value for key, value in results.items() if key.startswith("baseline:")}
    for label, figures in earlier.items():
        if "backends" in figures:
            facts |= {f"{label}.{key}": value for key, value in profile_facts(figures).items()}
    return facts


def _server_and_sampled(n: str, backend: dict[str, Any]) -> dict[str, str]:
    """The facts of a backend's server round trips and of its sampled drain."""
    facts: dict[str, str] = {}
    for key, value in backend.get("server_round_trips", {}).items():
        facts[f"{n}.rt.{key}"] = f"{value:.2f}"
    sampled = backend.get("sampled")
    if sampled:
        facts[f"{n}.sampled.rate"] = f"{sampled['completions_per_s']:,.0f}"
        spy = sampled["profile"].get("one_dequeuer_sampled", {})
        if "busy_fraction" in spy:
            facts[f"{n}.sampled.busy"] = f"{spy['busy_fraction']:.0%}"
            for key, share in spy["categories"].items():
                facts[f"{n}.sampled.{key}"] = f"{share:.0%}"
    return facts


@dataclasses.dataclass(frozen=True, slots=True)
class Goal:
    """One goal of issue 19, what this run measured for it, and whether that meets it (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


#: issue 19's goals for the figures other scenarios measure
SUBMIT_GOAL, DISPATCH_GOAL, WAKE_GOAL_S = 0.8, 5000.0, 1.0


def goals(results: dict[str, Any]) -> list[Goal]:
    """Issue 19's goals, each against the figures of ``results`` (a missing scenario reads "not measured")."""
    out = []
    diy = results.get("diy", {})
    for q, limit in WAIT_GOALS.items():
        best = best_of_stacks(diy, q) if diy else None
        text = f"round trip with `Prefer: wait` &le; {limit:g}x the best of Celery, RQ and arq at {q}"
        if best is None:
            out.append(Goal(text, "not measured", None))
            continue
        value, what, ours = best
        ratio = ours["post_wait"] / value
        out.append(Goal(text, f"{ours['post_wait']:.2f} ms against {value:.2f} ms ({what}): {ratio:.2f}x",
                        ratio <= limit))  # fmt: skip
    waiters = results.get("waiters")
    text = "1,000 idle waiters add under 5% gateway CPU"
    if waiters:
        added = median([r["waiting_cpu"] - r["idle_cpu"] for r in waiters["runs"]])
        out.append(Goal(text, f"{added * 100:.2f}% of one core ({waiters['waiters']:,} waiters)", added < WAITERS_GOAL))
    else:
        out.append(Goal(text, "not measured", None))
    out.append(_wake(results.get("wake_from_zero")))
    submit = results.get("submit")
    text = f"submit throughput &ge; {SUBMIT_GOAL:g}x bare Starlette"
    if submit:
        ratio = median([r["ratio"] for r in submit["runs"]])
        out.append(Goal(text, f"{ratio:.2f}x", ratio >= SUBMIT_GOAL))
    else:
        out.append(Goal(text, "not measured", None))
    dispatch = results.get("dispatch")
    text = f"dispatch &ge; {DISPATCH_GOAL:,.0f} completions/s"
    if dispatch:
        rate = median([r["completions_per_s"] for r in dispatch["runs"]])
        out.append(Goal(text, f"{rate:,.0f} completions/s", rate >= DISPATCH_GOAL))
    else:
        out.append(Goal(text, "not measured", None))
    return out


def _wake(raw: object) -> Goal:
    """The wake-from-zero goal, from ``wake_from_zero`` in the results (bench/wake.py writes it): one entry per
    backend (and per server start), each with ``wake_s_p50``; the goal reads the slowest p50 (of this code: not
    the "before" runs kept for comparison). Tolerant of it
    missing (or given as plain seconds)."""
    text = "wake from zero (first request to an idle API to its dispatch, less the server's start)"
    text += f" &le; {WAKE_GOAL_S:g} s"
    seconds: float | None = None
    what = ""
    if isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, dict):
        runs = {
            label: run["wake_s_p50"]
            for label, run in raw.items()
            if isinstance(run, dict) and "wake_s_p50" in run and "(before:" not in label  # kept for comparison only
        }
        if runs:
            what = max(runs, key=lambda label: runs[label])
            seconds = float(runs[what])
            what = f" p50, the slowest of {len(runs)} runs ({what})"
    if seconds is None:
        return Goal(text, "not measured in this run (`wake_from_zero` in bench/results.json, from bench/wake.py)", None)
    return Goal(text, f"{seconds:.2f} s{what}", seconds <= WAKE_GOAL_S)


def run_facts(results: dict[str, Any]) -> dict[str, str]:
    """Named, formatted figures of (d), (w) and (k), for ``{{name}}`` in bench/notes.md (absent: not measured)."""
    facts: dict[str, str] = {}
    diy = results.get("diy", {})
    for q in WAIT_GOALS:
        best = best_of_stacks(diy, q) if diy else None
        if best is not None:
            value, what, ours = best
            facts[f"d.best.{q}"] = f"{value:.2f} ms ({what})"
            for key in ("post_wait", "get_wait", "poll"):
                facts[f"d.{key}.{q}"] = f"{ours[key]:.2f} ms"
                facts[f"d.{key}.{q}.ratio"] = f"{ours[key] / value:.2f}x"
    waiters = results.get("waiters")
    if waiters:
        runs = waiters["runs"]
        facts["w.idle"] = f"{median([r['idle_cpu'] for r in runs]) * 100:.2f}%"
        facts["w.waiting"] = f"{median([r['waiting_cpu'] for r in runs]) * 100:.2f}%"
        facts["w.added"] = f"{median([r['waiting_cpu'] - r['idle_cpu'] for r in runs]) * 100:.2f}%"
        facts["w.window"] = f"{waiters['window_s']:g} s"
    keepalive = results.get("keepalive")
    if keepalive:
        for name in ("quickack", "without", "direct"):
            for q in ("p50", "p99"):
                facts[f"k.{name}.{q}"] = f"{median([r[name][f'{q}_ms'] for r in keepalive['runs']]):.2f} ms"
    return facts
