"""The operator's JSON as Cortex scripts read it: integer timestamps, every replica count, no secret by default."""

from __future__ import annotations

from cortex.operator.service import REPLICA_COUNT_KEYS, replica_counts
from cortex.runtime.base import ReplicaState, ReplicaStatus
from tests.helpers import api_yaml
from tests.operator.conftest import Harness


async def test_get_shows_no_secret_unless_asked(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    (plain,) = (await harness.http.get("/get/echo")).json()
    assert "webhook_secret" not in plain
    assert all("webhook_secret" not in api for api in (await harness.http.get("/get")).json())
    (shown,) = (await harness.http.get("/get/echo", params={"show_secrets": "true"})).json()
    assert shown["webhook_secret"].startswith("whsec_")


async def test_timestamps_are_whole_seconds(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo"), "/tmp/cortex.yaml")
    (api,) = (await harness.http.get("/get/echo")).json()
    assert type(api["metadata"]["last_updated"]) is int
    assert [type(version["last_updated"]) for version in api["api_versions"]] == [int]


async def test_describe_has_every_cortex_replica_count(harness: Harness) -> None:
    await harness.operator.deploy(api_yaml("echo", extra="autoscaling: {init_replicas: 2}\n"), "/tmp/cortex.yaml")
    described = (await harness.http.get("/describe/echo")).json()
    counts = described["replica_counts"]
    assert list(counts) == list(REPLICA_COUNT_KEYS)
    assert (counts["requested"], counts["ready"]) == (2, 2)
    assert all(counts[key] == 0 for key in ("err_image_pull", "killed", "killed_oom", "stalled", "unknown"))
    assert described["api"]["status"]["replica_counts"] == counts  # where Cortex's describe had them


def test_each_replica_state_is_counted_under_cortexs_key() -> None:
    replicas = [ReplicaStatus(f"r{i}", "echo", state, "d", 0.0) for i, state in enumerate(ReplicaState)]
    counts = replica_counts(len(replicas), replicas)
    assert counts["requested"] == len(list(ReplicaState))
    assert all(counts[state.value] == 1 for state in ReplicaState)
    assert counts["unknown"] == 0
