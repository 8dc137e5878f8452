"""``deploy/``: the Grafana dashboard and the Prometheus rules name only metrics the project exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cortex.dequeuer.metrics import DequeuerMetrics
from cortex.gateway.metrics import GatewayMetrics
from cortex.metrics import OperatorMetrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "asyncapi-dashboard.json"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
NAME = re.compile(r"cortex_async_[a-z_]+")
#: the series each metric type is scraped as, by suffix
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name the project's registries expose (a labelled metric has no series until used)."""
    registries: list[CollectorRegistry] = [
        OperatorMetrics().registry,
        DequeuerMetrics().registry,
        GatewayMetrics().registry,
    ]
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def dashboard_exprs() -> list[str]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in data["panels"] for target in panel.get("targets", [])]
    exprs += [var["definition"] for var in data["templating"]["list"] if var["type"] == "query"]
    return exprs


def rule_exprs() -> list[str]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in data["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("exprs", [dashboard_exprs, rule_exprs], ids=["dashboard", "alerts"])
def test_queries_name_only_exported_metrics(exprs: Any) -> None:
    names = {name for expr in exprs() for name in NAME.findall(expr)}
    assert names, "no cortex_async metric found in the queries"
    assert names <= exported(), f"not exported: {sorted(names - exported())}"


def test_the_dashboard_has_cortexs_panels_and_a_working_api_variable() -> None:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in data["panels"]}
    assert {"Request Rate", "In-Flight Requests", "2XX Responses", "4XX Responses", "5XX Responses"} <= titles
    assert {"Replicas", "p99 Latency", "p90 Latency", "p50 Latency", "Average Latency"} <= titles
    assert data["uid"] == "asyncapi"
    (api,) = [var for var in data["templating"]["list"] if var["name"] == "api_name"]
    assert set(NAME.findall(api["definition"])) <= exported()  # Cortex's was bound to a removed metric
    assert {panel["id"] for panel in data["panels"]} == set(range(1, len(data["panels"]) + 1))


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI (apt-get install -y prometheus)")
        pytest.skip("promtool is not installed (apt-get install -y prometheus)")
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


#: promtool's unit test of the oldest-request alert: one API's oldest request ages a minute per
#: minute, the other's stays young; past 1800 s, held 5 minutes, only the first one fires
OLDEST_REQUEST_TEST = {
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'cortex_async_oldest_queued_age_seconds{api_name="stuck"}', "values": "0+60x60"},
                {"series": 'cortex_async_oldest_queued_age_seconds{api_name="busy"}', "values": "5x60"},
            ],
            "alert_rule_test": [
                {"eval_time": "34m", "alertname": "CortexAsyncOldestRequestTooOld", "exp_alerts": []},
                {
                    "eval_time": "40m",
                    "alertname": "CortexAsyncOldestRequestTooOld",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning", "api_name": "stuck"},
                            "exp_annotations": {
                                "summary": "stuck: the oldest queued request has waited 40m 0s",
                                "description": (
                                    "A request of stuck has waited more than 30 minutes for a worker. See"
                                    " `cortex describe stuck` for the replicas, and raise"
                                    " autoscaling.max_replicas if they are all busy."
                                ),
                            },
                        }
                    ],
                },
            ],
        }
    ],
}


def test_the_oldest_request_alert_fires_past_its_threshold(tmp_path: Path) -> None:
    tests = tmp_path / "oldest-request-test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(RULES)], **OLDEST_REQUEST_TEST}))
    result = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
