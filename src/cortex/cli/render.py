"""Pretty output of the CLI: rich tables built from the operator's JSON, nothing fetched here.

Every function takes the JSON dicts as the operator answered them and ``now`` (unix seconds),
so the output is a pure function of its inputs. Tables look like Cortex's: no borders, bold
headers, three spaces between columns, relative times such as ``45s``, ``2m``, ``5h``, ``3d``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

#: the replica counts ``cortex describe`` shows, in Cortex's order, and whether a zero is hidden
REPLICA_COUNTS: tuple[tuple[str, str, bool], ...] = (
    ("Requested", "requested", False),
    ("Pending", "pending", False),
    ("Creating", "creating", False),
    ("NotReady", "not_ready", False),
    ("Ready", "ready", False),
    ("ReadyOutOfDate", "ready_out_of_date", False),
    ("ErrImagePull", "err_image_pull", True),
    ("Terminating", "terminating", False),
    ("Failed", "failed", True),
    ("Killed", "killed", True),
    ("KilledOOM", "killed_oom", True),
    ("Stalled", "stalled", True),
    ("Unknown", "unknown", True),
)


def duration(seconds: float) -> str:
    """A duration as Cortex shows it: seconds under a minute, minutes under an hour, hours under two days, days."""
    secs = max(0, int(seconds))
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 48 * 3600:
        return f"{secs // 3600}h"
    return f"{secs // (24 * 3600)}d"


def since(then: Any, now: float) -> str:
    """How long ago ``then`` was (unix seconds or an RFC 3339 string); ``-`` when unknown."""
    moment = timestamp(then)
    return "-" if moment is None else duration(now - moment)


def timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an RFC 3339 / ISO 8601 string; ``None`` when there is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    return None


def table(*headers: str) -> Table:
    """An empty table in Cortex's style."""
    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for header in headers:
        grid.add_column(header, no_wrap=True)
    return grid


def _cells(*values: Any) -> list[Text]:
    # Text, not str: a name or a detail with [brackets] must not be read as rich markup
    return [Text(str(value)) for value in values]


def _status_cells(api: dict[str, Any], now: float) -> list[Text]:
    status = api.get("status") or {}
    metadata = api.get("metadata") or {}
    live = f"{status.get('ready', 0)}/{status.get('requested', 0)}"
    return _cells(live, status.get("up_to_date", 0), since(metadata.get("last_updated"), now))


def _name(api: dict[str, Any]) -> str:
    return str((api.get("metadata") or {}).get("name") or (api.get("spec") or {}).get("name") or "")


def api_list_table(apis: Iterable[dict[str, Any]], now: float) -> Table:
    """``cortex get``: one row per API (``async api``, ``live``, ``up-to-date``, ``last update``), by name."""
    grid = table("async api", "live", "up-to-date", "last update")
    for api in sorted(apis, key=_name):
        grid.add_row(Text(_name(api)), *_status_cells(api, now))
    return grid


def env_apis_table(listed: Iterable[dict[str, Any]], now: float) -> Table:
    """``cortex get`` across environments: Cortex's ``env`` column first, then as :func:`api_list_table`."""
    grid = table("env", "async api", "live", "up-to-date", "last update")
    for entry in listed:
        for api in sorted(entry.get("apis") or [], key=_name):
            grid.add_row(Text(str(entry.get("env_name", ""))), Text(_name(api)), *_status_cells(api, now))
    return grid


def api_table(api: dict[str, Any], now: float) -> Table:
    """The one-row table of ``cortex get <api>`` (the name is in the command line, as in Cortex)."""
    grid = table("live", "up-to-date", "last update")
    grid.add_row(*_status_cells(api, now))
    return grid


def history_table(versions: Iterable[dict[str, Any]], now: float) -> Table:
    """The ``api id`` / ``last deployed`` table, in the operator's order."""
    grid = table("api id", "last deployed")
    for version in versions:
        grid.add_row(*_cells(version.get("api_id", ""), since(version.get("last_updated"), now)))
    return grid


def labelled(label: str, value: str) -> Text:
    """A ``label: value`` line with the label in bold, e.g. ``endpoint: http://...``."""
    line = Text(f"{label}: ", style="bold")
    line.append(value)
    return line


def _header(api: dict[str, Any], now: float) -> list[RenderableType]:
    parts: list[RenderableType] = [api_table(api, now)]
    if api.get("dashboard_url"):
        parts += [Text(""), labelled("metrics dashboard", str(api["dashboard_url"]))]
    parts += [Text(""), labelled("endpoint", str(api.get("endpoint") or "-"))]
    return parts


def api_detail(api: dict[str, Any], now: float) -> Group:
    """``cortex get <api>``: the one-row table, ``endpoint: <url>``, the webhook secret if the answer has it
    (``--show-secrets``), the queue summary if it has one, then the history table."""
    secret = [labelled("webhook secret", str(api["webhook_secret"]))] if api.get("webhook_secret") else []
    problems = [labelled("not serving", str(problem)) for problem in api.get("problems") or []]
    queue = [Text(""), *queue_summary(api["queue"])] if api.get("queue") else []
    return Group(
        *_header(api, now), *problems, *secret, *queue, Text(""), history_table(api.get("api_versions") or [], now)
    )


#: the request counts ``cortex get <api>`` shows: header, status
QUEUE_COUNTS = (
    ("in queue", "in_queue"),
    ("in progress", "in_progress"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
)


def queue_summary(queue: dict[str, Any]) -> list[RenderableType]:
    """The ``queue`` of ``GET /get/<api>``: requests by status with the oldest queued one's wait, then the
    replicas busy and idle (``unknown`` only when some did not say)."""
    requests = queue.get("requests") or {}
    counts = table(*(header for header, _ in QUEUE_COUNTS), "oldest queued")
    oldest = float(queue.get("oldest_queued_age") or 0.0)
    counts.add_row(*_cells(*(requests.get(key, 0) for _, key in QUEUE_COUNTS), duration(oldest) if oldest else "-"))
    replicas = queue.get("replicas") or {}
    columns = [("busy replicas", "busy"), ("idle replicas", "idle"), ("in flight", "in_flight")]
    if replicas.get("unknown"):
        columns.insert(2, ("unknown replicas", "unknown"))
    load = table(*(header for header, _ in columns))
    load.add_row(*_cells(*(replicas.get(key, 0) for _, key in columns)))
    window = f"requests counted over the retention window ({duration(float(queue.get('retention') or 0))})"
    return [counts, Text(""), load, Text(""), Text(window, style="dim")]


def replica_counts_table(counts: dict[str, Any]) -> Table:
    """``replica status`` / ``replica count``: Requested .. Terminating always, failure counts when non-zero."""
    grid = table("replica status", "replica count")
    for title, key, hidden_if_zero in REPLICA_COUNTS:
        count = counts.get(key, 0) or 0
        if count == 0 and hidden_if_zero:
            continue
        grid.add_row(*_cells(title, count))
    return grid


def replicas_table(replicas: Iterable[dict[str, Any]], now: float) -> Table:
    """One row per replica: ``replica``, ``state``, ``restarts``, ``age``, ``detail``."""
    grid = table("replica", "state", "restarts", "age", "detail")
    for replica in replicas:
        grid.add_row(
            *_cells(
                replica.get("id", ""),
                replica.get("state", ""),
                replica.get("restarts", 0),
                since(replica.get("started_at"), now),
                replica.get("detail") or "",
            )
        )
    return grid


def scaling_events_table(events: Iterable[dict[str, Any]], now: float) -> Table:
    """One row per autoscaling event, oldest first: ``autoscaling event`` (``1 -> 2``), ``age``, ``reason``."""
    grid = table("autoscaling event", "age", "reason")
    grid.columns[-1].no_wrap = False  # a long reason wraps rather than being cut
    for event in events:
        change = f"{event.get('from', '?')} -> {event.get('to', '?')}"
        grid.add_row(*_cells(change, since(event.get("time"), now), event.get("reason") or ""))
    return grid


def describe_view(description: dict[str, Any], now: float) -> Group:
    """``cortex describe <api>``: the API's table, endpoint, replica counts, replicas, then the scaling events."""
    parts = _header(description.get("api") or {}, now)
    parts += [Text(""), replica_counts_table(description.get("replica_counts") or {})]
    replicas = description.get("replicas") or []
    if replicas:
        parts += [Text(""), replicas_table(replicas, now)]
    events = description.get("autoscaling_events") or []
    if events:
        parts += [Text(""), scaling_events_table(events, now)]
    return Group(*parts)


def env_list(config: dict[str, Any]) -> Group:
    """``cortex env list``: a ``name`` / ``operator endpoint`` block per environment, as Cortex prints it."""
    default = config.get("default_environment")
    parts: list[RenderableType] = []
    for index, env in enumerate(config.get("environments") or []):
        if index:
            parts.append(Text(""))
        name = str(env.get("name", ""))
        parts.append(labelled("name", name + (" (default)" if name == default else "")))
        parts.append(labelled("operator endpoint", str(env.get("operator_endpoint", ""))))
    if not parts:
        parts.append(Text("no environments are configured; run `cortex cluster up` or `cortex env configure`"))
    return Group(*parts)


def readiness(api: dict[str, Any]) -> str:
    """``hello: 1/2 ready, 1 up to date``: one line of a rollout's progress."""
    status = api.get("status") or {}
    progress = api.get("progress") or []
    return (
        f"{_name(api)}: {status.get('ready', 0)}/{status.get('requested', 0)} ready, "
        f"{status.get('up_to_date', 0)} up to date" + (f" ({progress[0]})" if progress else "")
    )


def ready_line(api: dict[str, Any]) -> str:
    """``hello is ready (2/2 replicas)``: the end of a rollout."""
    status = api.get("status") or {}
    return f"{_name(api)} is ready ({status.get('ready', 0)}/{status.get('requested', 0)} replicas)"


#: the fields of a JSON log line (``cortex.logformat``) shown after its message
_LOG_CONTEXT = ("request_id", "action")


def log_line(line: str) -> str:
    """A log line for people: a JSON line of cortex's own (``{"time", "level", "message", ...}``) becomes
    ``<time> <level> <message>  request_id=... action=...``; any other line is left as it is.

    The ``[<replica> <container>] `` prefix is kept.
    """
    prefix, body = "", line
    if line.startswith("["):
        end = line.find("] ")
        if end > 0:
            prefix, body = line[: end + 2], line[end + 2 :]
    if not body.startswith("{"):
        return line
    try:
        data = json.loads(body)
    except ValueError:
        return line
    if not isinstance(data, dict) or "message" not in data:
        return line
    parts = [str(data.get("time") or data.get("ts") or ""), str(data.get("level") or "").upper(), str(data["message"])]
    text = " ".join(part for part in parts if part)
    context = " ".join(f"{key}={data[key]}" for key in _LOG_CONTEXT if data.get(key) is not None)
    if context:
        text += "  " + context
    if data.get("exception"):
        text += "\n" + str(data["exception"])
    return prefix + text
