"""The pretty output: rich tables from canned operator JSON, no server."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console, RenderableType

from cortex.cli import render
from tests.cli.conftest import NOW, api_response, describe_response


def text_of(renderable: RenderableType) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


def rows(renderable: RenderableType) -> list[list[str]]:
    return [line.split() for line in text_of(renderable).splitlines()]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (47 * 3600 + 3599, "47h"),
        (48 * 3600, "2d"),
        (30 * 24 * 3600, "30d"),
    ],
)
def test_duration_like_cortex(seconds: float, expected: str) -> None:
    assert render.duration(seconds) == expected


@pytest.mark.parametrize(
    ("then", "expected"),
    [
        (NOW - 120, "2m"),
        (int(NOW - 7200), "2h"),
        (str(NOW - 30), "30s"),
        ("2023-11-14T22:12:20Z", "1m"),  # NOW is 2023-11-14T22:13:20Z
        ("2023-11-14T22:12:20", "1m"),
        (None, "-"),
        ("", "-"),
        ("yesterday", "-"),
        (True, "-"),
    ],
)
def test_since(then: Any, expected: str) -> None:
    assert render.since(then, NOW) == expected


def test_api_list_table_sorted_by_name() -> None:
    apis = [
        api_response("world", ready=0, requested=2, up_to_date=0),
        api_response("hello", ready=1, requested=1, up_to_date=1),
    ]
    apis[0]["metadata"]["last_updated"] = NOW - 3 * 3600
    assert rows(render.api_list_table(apis, NOW)) == [
        ["async", "api", "live", "up-to-date", "last", "update"],
        ["hello", "1/1", "1", "2m"],
        ["world", "0/2", "0", "3h"],
    ]


def test_names_are_not_markup() -> None:
    api = api_response("[bold]x", ready=1, requested=1, up_to_date=1)
    assert "[bold]x" in text_of(render.api_list_table([api], NOW))


def test_api_detail() -> None:
    api = api_response("hello", ready=1, requested=1, up_to_date=1)
    api["api_versions"].append({"api_id": "older-id", "last_updated": NOW - 2 * 86400})
    lines = text_of(render.api_detail(api, NOW)).splitlines()
    assert lines[0].split() == ["live", "up-to-date", "last", "update"]
    assert lines[1].split() == ["1/1", "1", "2m"]
    assert "endpoint: http://127.0.0.1:8888/hello" in lines
    assert "metrics dashboard" not in "\n".join(lines)
    history = lines[lines.index("endpoint: http://127.0.0.1:8888/hello") + 2 :]
    assert [line.split() for line in history] == [
        ["api", "id", "last", "deployed"],
        ["hello-spec-id", "2m"],
        ["older-id", "2d"],
    ]


def test_api_detail_with_dashboard() -> None:
    api = api_response("hello", ready=1, requested=1, up_to_date=1)
    api["dashboard_url"] = "http://grafana/d/1"
    assert "metrics dashboard: http://grafana/d/1" in text_of(render.api_detail(api, NOW))


def test_describe_view() -> None:
    description = describe_response(api_response("hello", ready=1, requested=1, up_to_date=1))
    out = text_of(render.describe_view(description, NOW))
    table = [line.split() for line in out.splitlines()]
    assert ["replica", "status", "replica", "count"] in table
    for title, count in [
        ("Requested", "1"),
        ("Pending", "0"),
        ("Creating", "0"),
        ("NotReady", "0"),
        ("Ready", "1"),
        ("ReadyOutOfDate", "0"),
        ("Terminating", "0"),
    ]:
        assert [title, count] in table
    assert "Failed" not in out
    assert ["replica", "state", "restarts", "age", "detail"] in table
    assert ["hello-0", "ready", "2", "1h"] in table
    assert "endpoint: http://127.0.0.1:8888/hello" in out


def test_describe_shows_failed_when_non_zero_and_no_replica_table_when_none() -> None:
    description = describe_response(api_response("hello", ready=0, requested=1, up_to_date=0))
    description["replica_counts"]["failed"] = 2
    description["replicas"] = []
    table = rows(render.describe_view(description, NOW))
    assert ["Failed", "2"] in table
    assert ["replica", "state", "restarts", "age", "detail"] not in table


def test_describe_shows_the_scaling_events_under_the_replicas_oldest_first() -> None:
    description = describe_response(api_response("hello", ready=1, requested=1, up_to_date=1))
    description["autoscaling_events"] = [
        {"time": NOW - 90, "from": 0, "to": 1, "reason": "wake from zero: 1 queued, 0 in flight"},
        {"time": NOW - 30, "from": 1, "to": 0, "reason": "0.00 in flight on average over 1m, target 1 -> 0"},
    ]
    lines = text_of(render.describe_view(description, NOW)).splitlines()
    rows_ = [line.split() for line in lines]
    header = rows_.index(["autoscaling", "event", "age", "reason"])
    assert header > rows_.index(["replica", "state", "restarts", "age", "detail"])
    assert rows_[header + 1][:5] == ["0", "->", "1", "1m", "wake"]
    assert rows_[header + 2][:4] == ["1", "->", "0", "30s"]


def test_describe_without_events_has_no_event_table() -> None:
    description = describe_response(api_response("hello", ready=1, requested=1, up_to_date=1))
    assert "autoscaling event" not in text_of(render.describe_view(description, NOW))


def test_env_list() -> None:
    config = {
        "default_environment": "local",
        "environments": [
            {"name": "local", "operator_endpoint": "http://127.0.0.1:8889"},
            {"name": "prod", "operator_endpoint": "https://cortex.example.com"},
        ],
    }
    assert text_of(render.env_list(config)).splitlines() == [
        "name: local (default)",
        "operator endpoint: http://127.0.0.1:8889",
        "",
        "name: prod",
        "operator endpoint: https://cortex.example.com",
    ]
    assert "no environments are configured" in text_of(render.env_list({"environments": []}))


def test_readiness_lines() -> None:
    api = api_response("hello", ready=1, requested=2, up_to_date=1)
    assert render.readiness(api) == "hello: 1/2 ready, 1 up to date"
    assert render.ready_line(api) == "hello is ready (1/2 replicas)"


def test_a_json_log_line_is_shown_for_people() -> None:
    line = (
        '[echo-1 dequeuer] {"time": "2026-12-06T20:00:00.000Z", "level": "info", "logger": "cortex.dequeuer",'
        ' "message": "request done", "api": "echo", "request_id": "01abc", "action": "finish"}'
    )
    assert render.log_line(line) == (
        "[echo-1 dequeuer] 2026-12-06T20:00:00.000Z INFO request done  request_id=01abc action=finish"
    )


@pytest.mark.parametrize(
    "line",
    ["[echo-1 api] plain text", '[echo-1 api] {"no": "message"}', "[echo-1 api] {not json", "no prefix at all", "[x"],
)
def test_other_log_lines_are_left_alone(line: str) -> None:
    assert render.log_line(line) == line


def test_replica_counts_show_cortexs_failure_kinds_only_when_present() -> None:
    counts = dict.fromkeys(
        ("requested", "pending", "creating", "not_ready", "ready", "ready_out_of_date", "err_image_pull"), 0
    )
    counts |= {"requested": 2, "ready": 1, "terminating": 0, "failed": 0, "killed": 0, "killed_oom": 1, "stalled": 0}
    rows = [line.split() for line in text_of(render.replica_counts_table(counts)).splitlines()]
    titles = [row[0] for row in rows[1:]]
    assert titles == [
        "Requested",
        "Pending",
        "Creating",
        "NotReady",
        "Ready",
        "ReadyOutOfDate",
        "Terminating",
        "KilledOOM",
    ]
    assert rows[-1] == ["KilledOOM", "1"]


def _queue(*, unknown: int = 0, in_queue: int = 2, oldest: float = 75.0) -> dict[str, Any]:
    counts = {"in_queue": in_queue, "in_progress": 1, "completed": 120, "failed": 3, "cancelled": 0}
    replicas = {"requested": 2, "ready": 2, "busy": 1, "idle": 1 - unknown, "unknown": unknown, "in_flight": 1}
    return {
        "api": "hello",
        "requests": counts,
        "oldest_queued_age": oldest,
        "retention": 604800.0,
        "replicas": replicas,
    }


def test_api_detail_with_a_queue_summary() -> None:
    api = {**api_response("hello", ready=2, requested=2, up_to_date=2), "queue": _queue()}
    lines = text_of(render.api_detail(api, NOW)).splitlines()
    at = lines.index("endpoint: http://127.0.0.1:8888/hello") + 2
    assert [line.split() for line in lines[at : at + 5]] == [
        ["in", "queue", "in", "progress", "completed", "failed", "cancelled", "oldest", "queued"],
        ["2", "1", "120", "3", "0", "1m"],
        [],
        ["busy", "replicas", "idle", "replicas", "in", "flight"],
        ["1", "1", "1"],
    ]
    assert "requests counted over the retention window (7d)" in lines
    assert lines[-2].split() == ["api", "id", "last", "deployed"]  # the history follows


def test_queue_summary_shows_unknown_replicas_and_no_wait_when_nothing_is_queued() -> None:
    api = {
        **api_response("hello", ready=2, requested=2, up_to_date=2),
        "queue": _queue(unknown=1, in_queue=0, oldest=0),
    }
    text = text_of(render.api_detail(api, NOW))
    found = [line.split() for line in text.splitlines() if line.split() and line.split()[0] in ("0", "1")]
    assert found == [["0", "1", "120", "3", "0", "-"], ["1", "0", "1", "1"]]
    assert "unknown replicas" in text


def test_api_detail_without_a_queue_summary_has_no_queue_tables() -> None:
    api = {**api_response("hello", ready=1, requested=1, up_to_date=1), "queue": None}
    assert "in progress" not in text_of(render.api_detail(api, NOW))
