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
        table += _diy(results["diy"], results.get("dispatch"))
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


def _diy(raw: dict[str, Any], dispatch: dict[str, Any] | None) -> list[Row]:
    """Each stack beside cortex-async, compared as in (b): round trip less the handler's own time.

    The no-op job runs inside the stack's worker (its own time is nil), while cortex-async calls a
    user server over HTTP: that call is the handler's time, taken off as in scenario (b). The
    cortex-async figures here were measured right after each stack's, in the same run.
    """
    # a Python client's submissions (aiohttp, 32 at once, no replica taking work: the preload of c)
    ours_rate = median([r["preload_submits_per_s"] for r in dispatch["runs"]]) if dispatch else None
    out = []
    best: tuple[float, str, float, float] | None = None  # the best stack's p50, name, and ours beside it
    for name, stack in raw.items():
        summaries = [latency_summary(r["round_trip_s"]) for r in stack["runs"]]
        ours_runs = [r["cortex"] for r in stack["runs"]]
        rate = median([r["submits_per_s"] for r in stack["runs"]])
        out.append(
            Row("d", f"{name}: submit rate (its own client)", rate, "jobs/s", "cortex-async, aiohttp client", ours_rate,
                None if ours_rate is None else rate / ours_rate)
        )  # fmt: skip
        for q in ("p50", "p99"):
            value = median([s[f"{q}_ms"] for s in summaries])
            ours = median([r[f"overhead_{q}_ms"] for r in ours_runs])
            out.append(Row("d", f"{name}: round trip {q}", value, "ms", f"cortex-async overhead {q} beside it", ours,
                           value / ours))  # fmt: skip
            if q == "p50" and (best is None or value < best[0]):
                best = (value, name, ours, median([r["cortex"]["p50_ms"] for r in ours_runs]))
    if best is not None:
        value, name, ours, raw_rt = best
        out.append(
            Row("d", f"cortex-async overhead p50, one in flight, beside {name} (round trip {raw_rt:.2f} ms)",
                ours, "ms", f"best of Celery, RQ, arq: {name}", value, ours / value, "&le; best p50", ours <= value)
        )  # fmt: skip
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
    facts["f.load"] = str(machine.get("(f) rerun", machine.get("load average (1 min) at start", "?")))
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
