"""Server-side apply in the emulator: fields an applier stops sending go, others' fields stay, conflicts are 409."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import lightkube

from cortex.runtime.kubeobjects import KubeSettings
from cortex.runtime.kubernetes import KubernetesRuntime
from cortex.spec import load_text
from tests.kube.conftest import NAMESPACE, client_config
from tests.kube.emulator import Emulator
from tests.kube.test_emulator import deployment_dict

PATH = "/apis/apps/v1/namespaces/cortex/deployments/api"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


async def apply(http: httpx.AsyncClient, obj: dict[str, Any], manager: str, *, force: bool = False) -> httpx.Response:
    params = {"fieldManager": manager, **({"force": "true"} if force else {})}
    return await http.patch(PATH, json=obj, headers=APPLY, params=params)


def labelled(**labels: str) -> dict[str, Any]:
    obj = deployment_dict()
    obj["metadata"]["labels"] = {"app": "api", **labels}
    return obj


async def test_a_field_the_applier_stops_sending_is_removed(kube: Emulator) -> None:
    async with httpx.AsyncClient(base_url=kube.url) as http:
        assert (await apply(http, labelled(team="ml", tier="gpu"), "cortex")).status_code == 201
        answer = await apply(http, labelled(team="ml"), "cortex")
    assert answer.status_code == 200, answer.text
    assert answer.json()["metadata"]["labels"] == {"app": "api", "team": "ml"}


async def test_a_field_another_manager_set_survives_an_apply_without_it(kube: Emulator) -> None:
    async with httpx.AsyncClient(base_url=kube.url) as http:
        await apply(http, labelled(team="ml"), "cortex")
        patch = {"metadata": {"labels": {"owner": "alice"}}}
        assert (
            await http.patch(PATH, json=patch, headers=MERGE, params={"fieldManager": "kubectl"})
        ).status_code == 200
        answer = await apply(http, labelled(), "cortex")
    assert answer.json()["metadata"]["labels"] == {"app": "api", "owner": "alice"}


async def test_an_apply_changing_anothers_field_conflicts_unless_forced(kube: Emulator) -> None:
    async with httpx.AsyncClient(base_url=kube.url) as http:
        await apply(http, deployment_dict(replicas=2), "cortex")
        refused = await apply(http, deployment_dict(replicas=5), "someone")
        assert refused.status_code == 409 and refused.json()["reason"] == "Conflict"
        assert 'conflict with "cortex": .spec.replicas' in refused.json()["message"]
        forced = await apply(http, deployment_dict(replicas=5), "someone", force=True)
        assert forced.status_code == 200 and forced.json()["spec"]["replicas"] == 5
        # the field moved to the forcing manager: the first one applying without it no longer removes it
        without = deployment_dict()
        del without["spec"]["replicas"]
        answer = await apply(http, without, "cortex")
    assert answer.status_code == 200, answer.text
    assert answer.json()["spec"]["replicas"] == 5


async def test_string_data_removed_from_an_applied_secret_stays_as_data(kube: Emulator) -> None:
    # kubernetes#108008, reproduced: why `cluster up` replaces its Secrets instead of applying them
    path = "/api/v1/namespaces/cortex/secrets/s"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "1", "b": "2"}}
    async with httpx.AsyncClient(base_url=kube.url) as http:
        await http.patch(path, json=secret, headers=APPLY, params={"fieldManager": "cortex"})
        secret["stringData"] = {"a": "1"}
        answer = await http.patch(path, json=secret, headers=APPLY, params={"fieldManager": "cortex"})
    assert set(answer.json()["data"]) == {"a", "b"}


SCHEDULED = """
- name: worker
  kind: AsyncAPI
  pod:
    containers: [{name: api, image: "registry.example.com/worker:1"}]
  kubernetes: {node_selector: {example.com/pool: gpu}, runtime_class_name: nvidia}
"""


async def test_removing_the_kubernetes_section_removes_its_fields_from_the_deployment(kube: Emulator) -> None:
    settings = KubeSettings(namespace=NAMESPACE, image="registry.example.com/cortex-async:test")
    runtime = KubernetesRuntime(lightkube.AsyncClient(config=client_config(kube.url)), settings, sync_timeout=5)
    await runtime.start()
    try:
        (scheduled,) = load_text(SCHEDULED, "cortex.yaml")
        await runtime.apply(scheduled, deployment_id="d1", config_dir=Path("."), replicas=1)
        pod = kube.get("deployments", "api-worker")["spec"]["template"]["spec"]  # type: ignore[index]
        assert pod["nodeSelector"] == {"example.com/pool": "gpu"} and pod["runtimeClassName"] == "nvidia"
        (plain,) = load_text(SCHEDULED.split("  kubernetes:")[0], "cortex.yaml")
        await runtime.apply(plain, deployment_id="d2", config_dir=Path("."), replicas=1)
        pod = kube.get("deployments", "api-worker")["spec"]["template"]["spec"]  # type: ignore[index]
        assert "nodeSelector" not in pod and "runtimeClassName" not in pod
    finally:
        await runtime.aclose()
