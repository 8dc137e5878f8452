"""The emulator refuses what kube-apiserver refuses past the schema, with status 422 and the server's words.

Each case is a Deployment our runtime could plausibly send wrong; a real API server answers 422 ``Invalid``
(``Deployment.apps "<name>" is invalid: <field>: <reason>``), so the emulator must too, or tests pass that a
cluster would fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.kube.emulator import Emulator
from tests.kube.semantics import quantity
from tests.kube.test_emulator import deployment_dict

PATH = "/apis/apps/v1/namespaces/cortex/deployments"
Edit = Callable[[dict[str, Any]], None]


def _container(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers[index]


def other_labels(obj: dict[str, Any]) -> None:
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "other"}


def missing_volume(obj: dict[str, Any]) -> None:
    _container(obj)["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]


def duplicate_container(obj: dict[str, Any]) -> None:
    obj["spec"]["template"]["spec"]["containers"].append(copy.deepcopy(_container(obj)))


def gpu_without_limit(obj: dict[str, Any]) -> None:
    _container(obj)["resources"] = {"requests": {"nvidia.com/gpu": "1"}}


def gpu_limit_below_request(obj: dict[str, Any]) -> None:
    _container(obj)["resources"] = {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "1"}}


def lots_of_memory(obj: dict[str, Any]) -> None:
    _container(obj)["resources"] = {"requests": {"memory": "lots"}}


def bad_name(obj: dict[str, Any]) -> None:
    obj["metadata"]["name"] = "Bad_Name"


def unavailable_over_100(obj: dict[str, Any]) -> None:
    obj["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "101%"}}


def memory_request_over_limit(obj: dict[str, Any]) -> None:
    _container(obj)["resources"] = {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}


CASES: dict[str, tuple[Edit, str]] = {
    "selector-not-template": (
        other_labels,
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}:'
        " `selector` does not match template `labels`",
    ),
    "missing-volume": (missing_volume, 'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "dshm"'),
    "duplicate-container": (duplicate_container, 'spec.template.spec.containers[1].name: Duplicate value: "api"'),
    "gpu-without-limit": (
        gpu_without_limit,
        "spec.template.spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable"
        " resources",
    ),
    "gpu-limit-differs": (
        gpu_limit_below_request,
        'resources.requests[nvidia.com/gpu]: Invalid value: "2": must be equal to nvidia.com/gpu limit of 1',
    ),
    "memory-lots": (
        lots_of_memory,
        'spec.template.spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match'
        " the regular expression",
    ),
    "bad-name": (bad_name, 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist'),
    "unavailable-over-100": (
        unavailable_over_100,
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "101%": must not be greater than 100%',
    ),
    "memory-over-limit": (
        memory_request_over_limit,
        'resources.requests[memory]: Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi',
    ),
}


@pytest.mark.parametrize(("edit", "expected"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("verb", ["create", "apply"])
async def test_each_broken_deployment_is_refused_with_422(kube: Emulator, edit: Edit, expected: str, verb: str) -> None:
    obj = deployment_dict()
    edit(obj)
    name = obj["metadata"]["name"]
    async with httpx.AsyncClient(base_url=kube.url) as http:
        if verb == "create":
            answer = await http.post(PATH, json=obj)
        else:
            headers = {"Content-Type": "application/apply-patch+yaml"}
            answer = await http.patch(f"{PATH}/{name}", json=obj, headers=headers, params={"fieldManager": "t"})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(f'Deployment.apps "{name}" is invalid: ')
    assert expected in body["message"]
    assert kube.objects("deployments") == []


async def test_a_deployments_selector_cannot_change(kube: Emulator) -> None:
    obj = deployment_dict()
    async with httpx.AsyncClient(base_url=kube.url) as http:
        assert (await http.post(PATH, json=obj)).status_code == 201
        changed = copy.deepcopy(obj)
        changed["spec"]["selector"] = {"matchLabels": {"app": "api", "tier": "x"}}
        changed["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
        answer = await http.put(f"{PATH}/api", json=changed)
    assert answer.status_code == 422
    assert "spec.selector: Invalid value: " in answer.json()["message"]
    assert answer.json()["message"].endswith(": field is immutable")
    stored = kube.get("deployments", "api")
    assert stored is not None and stored["spec"]["selector"] == {"matchLabels": {"app": "api"}}


async def test_a_valid_deployment_with_a_gpu_and_shm_is_accepted(kube: Emulator) -> None:
    obj = deployment_dict()
    _container(obj)["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"},
    }
    _container(obj)["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    async with httpx.AsyncClient(base_url=kube.url) as http:
        answer = await http.post(PATH, json=obj)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("1Gi", str(2**30)), ("1e3", "1000"), ("2k", "2000"), ("lots", None), ("1Gb", None)],
)
def test_quantities_parse_as_kubernetes_reads_them(text: str, value: str | None) -> None:
    assert quantity(text) == (None if value is None else Decimal(value))
