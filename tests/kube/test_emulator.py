"""The Kubernetes API emulator, through lightkube's AsyncClient over HTTP: the contract our runtime's tests rely on."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import lightkube
import pytest
from lightkube import operators
from lightkube.models.autoscaling_v1 import ScaleSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Secret
from lightkube.types import PatchType

from tests.kube.conftest import NAMESPACE, client_config
from tests.kube.controller import DELETION_COST, HASH_LABEL, rolling_bounds
from tests.kube.emulator import Emulator
from tests.kube.resources import RESOURCES, ResourceType, matches_labels
from tests.kube.schemas import validation_error

T = TypeVar("T")
#: the longest any single step of a test waits for the emulator
WAIT = 3.0


def deployment_dict(name: str = "api", replicas: int = 2, image: str = "img:1", **spec: Any) -> dict[str, Any]:
    """A Deployment with one container named ``name``, its pods labelled ``app=<name>``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"cortex.dev/api": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
            **spec,
        },
    }


def deployment(name: str = "api", replicas: int = 2, image: str = "img:1", **spec: Any) -> Deployment:
    """:func:`deployment_dict` as a lightkube object."""
    obj = Deployment.from_dict(deployment_dict(name, replicas, image, **spec))
    assert isinstance(obj, Deployment)
    return obj


def config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> ConfigMap:
    """A ConfigMap."""
    return ConfigMap(metadata=ObjectMeta(name=name, labels=labels), data=data)


def pod_names(kube: Emulator, app: str = "api") -> list[str]:
    """The live (not terminating) pods of ``app``, by name."""
    return sorted(
        p["metadata"]["name"]
        for p in kube.objects("pods", NAMESPACE)
        if p["metadata"]["labels"].get("app") == app and "deletionTimestamp" not in p["metadata"]
    )


def meta(obj: Any) -> ObjectMeta:
    """The ``metadata`` of a lightkube object, which must have one."""
    assert isinstance(obj.metadata, ObjectMeta)
    return obj.metadata


def stored(kube: Emulator, plural: str, name: str) -> dict[str, Any]:
    """The stored object (in ``cortex``), which must exist."""
    found = kube.get(plural, name, NAMESPACE)
    assert found is not None, f"{plural}/{name} is not stored"
    return found


def ready(kube: Emulator, pod: str) -> bool:
    """Whether the pod's (only) container is ready."""
    return bool(stored(kube, "pods", pod)["status"]["containerStatuses"][0]["ready"])


async def take(events: AsyncIterable[T], count: int) -> list[T]:
    """The first ``count`` items of ``events`` (each within :data:`WAIT` seconds), closing the stream after."""
    iterator = aiter(events)
    try:
        return await following(iterator, count)
    finally:
        if isinstance(iterator, AsyncGenerator):
            await iterator.aclose()


async def following(iterator: AsyncIterator[T], count: int) -> list[T]:
    """The next ``count`` items of ``iterator`` (each within :data:`WAIT` seconds), leaving it open."""
    return [await asyncio.wait_for(anext(iterator), WAIT) for _ in range(count)]


async def until(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds, failing after :data:`WAIT` seconds."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def status_of(call: Awaitable[object]) -> int:
    """The HTTP status of the ``ApiError`` that awaiting ``call`` raises."""
    with pytest.raises(lightkube.ApiError) as raised:
        await call
    return int(raised.value.status.code or 0)


# -- basic verbs -------------------------------------------------------------------------------------------------


async def test_create_sets_metadata_and_get_returns_it(kube_client: lightkube.AsyncClient) -> None:
    created = await kube_client.create(config_map("one", a="1"))
    fetched = await kube_client.get(ConfigMap, "one")
    assert fetched.metadata is not None and created.metadata is not None
    assert fetched.metadata.namespace == NAMESPACE
    assert fetched.metadata.uid == created.metadata.uid and fetched.metadata.uid
    assert fetched.metadata.generation == 1 and fetched.metadata.creationTimestamp is not None
    second = await kube_client.create(config_map("two"))
    assert int(meta(second).resourceVersion or 0) > int(meta(fetched).resourceVersion or 0)
    assert fetched.data == {"a": "1"}
    with pytest.raises(lightkube.ApiError) as raised:
        await kube_client.create(config_map("one"))
    assert (raised.value.status.code, raised.value.status.reason) == (409, "AlreadyExists")
    assert await status_of(kube_client.get(ConfigMap, "three")) == 404


async def test_list_filters_by_labels_and_fields(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("a", {"app": "x", "tier": "web"}))
    await kube_client.create(config_map("b", {"app": "y"}))
    await kube_client.create(config_map("c", {"app": "x"}))
    kube.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d", "namespace": "other"}})

    async def names(**selection: Any) -> list[str]:
        return [
            cm.metadata.name
            async for cm in kube_client.list(ConfigMap, **selection)
            if cm.metadata and cm.metadata.name
        ]

    assert await names(labels={"app": "x"}) == ["a", "c"]
    assert await names(labels={"app": operators.not_equal("x")}) == ["b"]
    assert await names(labels={"tier": operators.exists()}) == ["a"]
    assert await names(labels={"app": "x", "tier": operators.not_exists()}) == ["c"]
    assert await names(labels={"app": operators.in_(["y", "z"])}) == ["b"]
    assert await names(fields={"metadata.name": "b"}) == ["b"]
    assert await names(namespace="*") == ["a", "b", "c", "d"]
    async with httpx.AsyncClient(base_url=kube.url) as http:
        answer = await http.get("/api/v1/namespaces/cortex/configmaps", params={"labelSelector": "app==x,tier"})
        assert [item["metadata"]["name"] for item in answer.json()["items"]] == ["a"]
        assert answer.json()["metadata"]["resourceVersion"] == str(kube.resource_version)
        assert (await http.get("/api/v1/configmaps", params={"labelSelector": "app in x"})).status_code == 400


async def test_replace_needs_a_current_resource_version(kube_client: lightkube.AsyncClient) -> None:
    original = await kube_client.create(config_map("cm", a="1"))
    original.data = {"a": "2"}
    replaced = await kube_client.replace(original)
    assert replaced.data == {"a": "2"}
    assert replaced.metadata is not None and original.metadata is not None
    assert replaced.metadata.resourceVersion != original.metadata.resourceVersion
    original.data = {"a": "3"}  # still carries the old resourceVersion
    assert await status_of(kube_client.replace(original)) == 409
    assert (await kube_client.get(ConfigMap, "cm")).data == {"a": "2"}
    original.metadata.resourceVersion = None
    assert (await kube_client.replace(original)).data == {"a": "3"}  # unconditional
    assert await status_of(kube_client.replace(config_map("missing"))) == 404


async def test_merge_patch_merges_maps_and_removes_nulls(kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("cm", a="1", b="2"))
    patched = await kube_client.patch(ConfigMap, "cm", {"data": {"b": None, "c": "3"}}, patch_type=PatchType.MERGE)
    assert patched.data == {"a": "1", "c": "3"}
    patched = await kube_client.patch(ConfigMap, "cm", {"metadata": {"labels": {"x": "y"}}})  # strategic
    assert patched.metadata is not None and patched.metadata.labels == {"x": "y"}
    assert patched.data == {"a": "1", "c": "3"}
    assert await status_of(kube_client.patch(ConfigMap, "nope", {"data": {}})) == 404


async def test_patching_the_spec_bumps_the_generation(kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment())
    labelled = await kube_client.patch(Deployment, "api", {"metadata": {"labels": {"v": "1"}}})
    assert labelled.metadata is not None and labelled.metadata.generation == 1
    scaled = await kube_client.patch(Deployment, "api", {"spec": {"replicas": 3}}, patch_type=PatchType.MERGE)
    assert scaled.metadata is not None and scaled.metadata.generation == 2


async def test_apply_creates_then_merges(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    created = await kube_client.apply(deployment(replicas=1), field_manager="cortex")
    assert created.spec is not None and created.spec.replicas == 1
    applied = deployment(replicas=3)
    assert applied.metadata is not None
    applied.metadata.labels = {"app": "api", "team": "ml"}
    updated = await kube_client.apply(applied, field_manager="cortex")
    assert updated.spec is not None and updated.spec.replicas == 3
    assert updated.metadata is not None and updated.metadata.labels == {"app": "api", "team": "ml"}
    assert updated.metadata.uid == (created.metadata.uid if created.metadata else None)
    assert ("PATCH", "/apis/apps/v1/namespaces/cortex/deployments/api", PatchType.APPLY.value) in kube.requests
    async with httpx.AsyncClient(base_url=kube.url) as http:
        headers = {"Content-Type": PatchType.APPLY.value}
        path = "/api/v1/namespaces/cortex/configmaps/y"
        body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n"
        assert (await http.patch(path, content=body, headers=headers)).status_code == 400  # no fieldManager
        answer = await http.patch(path, content=body, headers=headers, params={"fieldManager": "t"})
        assert answer.status_code == 201 and answer.json()["data"] == {"k": "v"}  # YAML bodies too


async def test_json_patch_adds_replaces_and_removes(kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("cm", a="1", b="2"))
    operations = [
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"k8s.io~1x": "y"}},
    ]
    patched = await kube_client.patch(ConfigMap, "cm", operations, patch_type=PatchType.JSON)
    assert patched.data == {"a": "10", "c": "3"}
    failing = [{"op": "test", "path": "/data/a", "value": "1"}]
    assert await status_of(kube_client.patch(ConfigMap, "cm", failing, patch_type=PatchType.JSON)) == 422
    missing = [{"op": "remove", "path": "/data/zzz"}]
    assert await status_of(kube_client.patch(ConfigMap, "cm", missing, patch_type=PatchType.JSON)) == 422


async def test_delete_removes_the_object(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("cm"))
    await kube_client.delete(ConfigMap, "cm")
    assert kube.get("configmaps", "cm") is None
    assert await status_of(kube_client.delete(ConfigMap, "cm")) == 404


async def test_namespaces_are_cluster_scoped(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(Namespace(metadata=ObjectMeta(name="cortex")))
    assert [ns.metadata.name async for ns in kube_client.list(Namespace) if ns.metadata] == ["cortex"]
    await kube_client.create(config_map("cm"))
    await kube_client.delete(Namespace, "cortex")
    assert kube.objects("namespaces") == [] and kube.objects("configmaps") == []  # its objects went with it


async def test_unknown_resources_answer_a_not_found_status(kube: Emulator) -> None:
    async with httpx.AsyncClient(base_url=kube.url) as http:
        for path in ("/apis/batch/v1/namespaces/cortex/jobs", "/api/v1/namespaces/cortex/pods/x/exec", "/healthz"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["kind"] == "Status" and answer.json()["reason"] == "NotFound"


MINIMAL: dict[str, dict[str, Any]] = {
    "namespaces": {},
    "configmaps": {"data": {"k": "v"}},
    "secrets": {"type": "Opaque", "data": {"k": "dg=="}},
    "pods": {"spec": {"containers": [{"name": "c", "image": "img"}]}},
    "services": {"spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    "serviceaccounts": {},
    "deployments": {"spec": deployment_dict()["spec"]},
    "roles": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
    "rolebindings": {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "cortex"}],
    },
    "horizontalpodautoscalers": {
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}, "maxReplicas": 3}
    },
}


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.plural)
async def test_every_resource_is_served(kube: Emulator, resource: ResourceType) -> None:
    prefix = f"/api/{resource.version}" if not resource.group else f"/apis/{resource.api_version}"
    collection = (
        f"{prefix}/namespaces/cortex/{resource.plural}" if resource.namespaced else f"{prefix}/{resource.plural}"
    )
    body = {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": "x"},
        **MINIMAL[resource.plural],
    }
    async with httpx.AsyncClient(base_url=kube.url) as http:
        created = await http.post(collection, json=body)
        assert created.status_code == 201, created.text
        fetched = (await http.get(f"{collection}/x")).json()
        assert fetched["metadata"]["uid"] == created.json()["metadata"]["uid"]
        assert validation_error(fetched) is None
        listed = (await http.get(collection)).json()
        assert listed["kind"] == f"{resource.kind}List" and [i["metadata"]["name"] for i in listed["items"]] == ["x"]
        assert (await http.delete(f"{collection}/x")).status_code == 200
        assert (await http.get(f"{collection}/x")).status_code == 404


async def test_secret_string_data_is_stored_encoded(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(Secret(metadata=ObjectMeta(name="s"), stringData={"token": "abc"}, data={"a": "Yg=="}))
    assert stored(kube, "secrets", "s")["data"] == {"a": "Yg==", "token": "YWJj"}
    assert "stringData" not in stored(kube, "secrets", "s")


# -- validation --------------------------------------------------------------------------------------------------


async def test_invalid_objects_are_rejected_naming_the_field(
    kube: Emulator, kube_client: lightkube.AsyncClient
) -> None:
    await kube_client.create(deployment())
    with pytest.raises(lightkube.ApiError) as raised:
        await kube_client.patch(Deployment, "api", {"spec": {"replicas": "two"}}, patch_type=PatchType.MERGE)
    assert raised.value.status.code == 422 and raised.value.status.reason == "Invalid"
    assert "spec.replicas" in (raised.value.status.message or "")
    assert stored(kube, "deployments", "api")["spec"]["replicas"] == 2

    bogus = deployment_dict("bogus")
    bogus["spec"]["bogus"] = True
    with pytest.raises(lightkube.ApiError) as raised:
        await kube_client.patch(Deployment, "bogus", bogus, patch_type=PatchType.APPLY, field_manager="t")
    assert raised.value.status.code == 422 and "'bogus' was unexpected" in (raised.value.status.message or "")
    assert kube.get("deployments", "bogus") is None

    no_image = deployment_dict("x")
    del no_image["spec"]["selector"]
    async with httpx.AsyncClient(base_url=kube.url) as http:
        answer = await http.post("/apis/apps/v1/namespaces/cortex/deployments", json=no_image)
    assert answer.status_code == 422 and "'selector' is a required property" in answer.json()["message"]


# -- watch -------------------------------------------------------------------------------------------------------


async def test_watch_reports_changes_in_order_and_resumes(kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("cm", a="1"))
    watch = aiter(kube_client.watch(ConfigMap))
    try:
        (first,) = await following(watch, 1)  # the initial state: the watch is open once this arrived
        await kube_client.patch(ConfigMap, "cm", {"data": {"a": "2"}})
        await kube_client.delete(ConfigMap, "cm")
        later = await following(watch, 2)
    finally:
        if isinstance(watch, AsyncGenerator):
            await watch.aclose()
    assert [kind for kind, _ in [first, *later]] == ["ADDED", "MODIFIED", "DELETED"]
    assert later[0][1].data == {"a": "2"}
    resumed = await take(kube_client.watch(ConfigMap, resource_version=meta(first[1]).resourceVersion), 2)
    assert [(kind, meta(cm).name) for kind, cm in resumed] == [("MODIFIED", "cm"), ("DELETED", "cm")]


async def test_watch_filters_by_namespace_and_labels(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(config_map("seed"))
    events = kube_client.watch(ConfigMap, labels={"app": "x"}, resource_version=str(kube.resource_version))
    await kube_client.create(config_map("other", {"app": "y"}))
    kube.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "far", "namespace": "elsewhere"}})
    await kube_client.create(config_map("wanted", {"app": "x"}))
    assert [(kind, meta(cm).name) for kind, cm in await take(events, 1)] == [("ADDED", "wanted")]


async def test_a_watch_from_a_forgotten_version_is_gone() -> None:
    async with Emulator(history=2) as kube:
        client = lightkube.AsyncClient(config=client_config(kube.url))
        try:
            for name in "abcd":
                await client.create(config_map(name))
            with pytest.raises(lightkube.ApiError) as raised:
                await take(client.watch(ConfigMap, resource_version="1"), 1)
            assert raised.value.status.code == 410
            recent = await take(client.watch(ConfigMap, resource_version=str(kube.resource_version - 1)), 1)
            assert [(kind, meta(cm).name) for kind, cm in recent] == [("ADDED", "d")]
        finally:
            await client.close()


async def test_a_watch_ends_after_its_timeout(kube: Emulator) -> None:
    async with httpx.AsyncClient(base_url=kube.url) as http:
        params = {"watch": "true", "timeoutSeconds": "1"}
        answer = await asyncio.wait_for(http.get("/api/v1/namespaces/cortex/configmaps", params=params), WAIT)
    assert answer.status_code == 200 and answer.text == ""


# -- scale -------------------------------------------------------------------------------------------------------


async def test_scale_subresource(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment(replicas=2))
    scale = await kube_client.get(Deployment.Scale, "api")
    assert scale.spec is not None and scale.status is not None
    assert scale.spec.replicas == 2 and scale.status.replicas == 2 and scale.status.selector == "app=api"
    patched = await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 3}})
    assert patched.spec is not None and patched.spec.replicas == 3
    scaled = await kube_client.get(Deployment, "api")
    assert scaled.spec is not None and scaled.spec.replicas == 3
    assert scaled.metadata is not None and scaled.metadata.generation == 2
    assert len(pod_names(kube)) == 3
    replaced = await kube_client.replace(
        Deployment.Scale(metadata=ObjectMeta(name="api"), spec=ScaleSpec(replicas=1)), "api"
    )
    assert replaced.spec is not None and replaced.spec.replicas == 1 and len(pod_names(kube)) == 1
    stale = Deployment.Scale(metadata=ObjectMeta(name="api", resourceVersion="1"), spec=ScaleSpec(replicas=5))
    assert await status_of(kube_client.replace(stale, "api")) == 409
    assert await status_of(kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": -1}})) == 422


# -- the controller ----------------------------------------------------------------------------------------------


async def test_a_deployment_gets_ready_pods(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    created = await kube_client.create(deployment(replicas=3))
    pods = kube.objects("pods", NAMESPACE)
    assert len(pods) == 3
    for pod in pods:
        meta = pod["metadata"]
        assert meta["name"].startswith(f"api-{meta['labels'][HASH_LABEL]}-") and len(meta["name"].split("-")[-1]) == 5
        assert meta["labels"]["app"] == "api" and meta["annotations"] == {"cortex.dev/api": "api"}
        assert meta["ownerReferences"][0]["uid"] == (created.metadata.uid if created.metadata else None)
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"].startswith("10.0.")
        assert {"type": "Ready", "status": "True"}.items() <= pod["status"]["conditions"][-1].items()
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        assert validation_error(pod) is None
    assert len({pod["status"]["podIP"] for pod in pods}) == 3
    status = (await kube_client.get(Deployment, "api")).status
    assert status is not None
    assert (status.replicas, status.readyReplicas, status.updatedReplicas, status.availableReplicas) == (3, 3, 3, 3)
    assert status.observedGeneration == 1
    assert validation_error(kube.get("deployments", "api") or {}) is None


async def test_held_pods_stay_not_ready_until_made_ready(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    kube.hold_ready = True
    await kube_client.create(deployment(replicas=2))
    first, _ = pod_names(kube)
    pod = await kube_client.get(Pod, first)
    assert pod.status is not None and pod.status.phase == "Running"
    assert [c.status for c in pod.status.conditions or [] if c.type == "Ready"] == ["False"]
    status = (await kube_client.get(Deployment, "api")).status
    assert status is not None and status.readyReplicas is None and status.unavailableReplicas == 2  # 0 is left out
    kube.make_ready(first)
    await kube.settle()
    status = (await kube_client.get(Deployment, "api")).status
    assert status is not None and status.readyReplicas == 1
    with pytest.raises(KeyError):
        kube.make_ready("no-such-pod")


async def test_scale_in_deletes_the_cheapest_pods_first(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment(replicas=5))
    pods = pod_names(kube)
    costs = {pods[0]: "100", pods[1]: "-5", pods[2]: "7", pods[3]: "-5"}  # pods[4]: none, so 0
    for name, cost in costs.items():
        await kube_client.patch(Pod, name, {"metadata": {"annotations": {DELETION_COST: cost}}})
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 2}})
    assert sorted(kube.deleted_pods[:2]) == sorted([pods[1], pods[3]]) and kube.deleted_pods[2] == pods[4]
    assert pod_names(kube) == sorted([pods[0], pods[2]])


async def test_scale_in_deletes_not_ready_pods_before_cheap_ones(
    kube: Emulator, kube_client: lightkube.AsyncClient
) -> None:
    """Kubernetes ranks readiness before the deletion cost (``ActivePodsWithRanks``), and so does the emulator."""
    await kube_client.create(deployment(replicas=2))
    kube.hold_ready = True
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 3}})
    old = [name for name in pod_names(kube) if ready(kube, name)]
    (not_ready,) = set(pod_names(kube)) - set(old)
    await kube_client.patch(Pod, old[0], {"metadata": {"annotations": {DELETION_COST: "-100"}}})
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 2}})
    assert kube.deleted_pods == [not_ready]


async def test_scale_in_deletes_the_newest_pods_among_equals(
    kube: Emulator, kube_client: lightkube.AsyncClient
) -> None:
    await kube_client.create(deployment(replicas=1))
    (oldest,) = pod_names(kube)
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 2}})
    (middle,) = set(pod_names(kube)) - {oldest}
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 3}})
    (newest,) = set(pod_names(kube)) - {oldest, middle}
    await kube_client.patch(Deployment.Scale, "api", {"spec": {"replicas": 1}})
    assert kube.deleted_pods == [newest, middle]


async def test_a_rolling_update_stays_within_the_surge(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    await kube_client.create(deployment(replicas=4, strategy=strategy))  # surge: 25% of 4 = 1 pod
    old = pod_names(kube)
    events = aiter(kube_client.watch(Pod, resource_version=str(kube.resource_version)))
    kube.hold_ready = True
    await kube_client.patch(
        Deployment, "api", {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "img:2"}]}}}}
    )
    for _ in range(10):
        await kube.settle()
        not_ready = [name for name in pod_names(kube) if not ready(kube, name)]
        if not not_ready:
            break
        assert len(not_ready) == 1  # one surge pod at a time: none of the old ones may go first
        kube.make_ready(not_ready[0])
    current = {p["metadata"]["labels"][HASH_LABEL] for p in kube.objects("pods", NAMESPACE)}
    assert len(current) == 1 and len(pod_names(kube)) == 4 and not set(pod_names(kube)) & set(old)
    assert len(kube.deleted_pods) == 4 and set(kube.deleted_pods) == set(old)
    live, peak = 4, 4
    for kind, _ in await take(events, 12):  # each new pod: ADDED, then MODIFIED (made ready); each old: DELETED
        live += {"ADDED": 1, "DELETED": -1}.get(kind, 0)
        peak = max(peak, live)
    assert peak == 5
    status = (await kube_client.get(Deployment, "api")).status
    assert status is not None and (status.updatedReplicas, status.readyReplicas, status.replicas) == (4, 4, 4)
    assert status.observedGeneration == 2


async def test_a_default_rolling_update_replaces_every_pod(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment(replicas=4))  # maxSurge and maxUnavailable 25%: 1 pod each
    old = pod_names(kube)
    await kube_client.patch(Deployment, "api", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}})
    assert len(pod_names(kube)) == 4 and not set(pod_names(kube)) & set(old)
    assert sorted(kube.deleted_pods) == old
    await asyncio.wait_for(kube_client.wait(Deployment, "api", for_conditions=["Available"]), WAIT)


async def test_recreate_deletes_every_old_pod_first(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    kube.pod_termination_delay = 10
    await kube_client.create(deployment(replicas=2, strategy={"type": "Recreate"}))
    events = aiter(kube_client.watch(Pod, resource_version=str(kube.resource_version)))
    try:
        await kube_client.patch(Deployment, "api", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}})
        assert pod_names(kube) == []  # the old pods are terminating, and no new pod may start yet
        kube.advance(11)
        assert len(pod_names(kube)) == 2
        kinds = [kind for kind, _ in await following(events, 6)]
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()
    assert kinds == ["MODIFIED", "MODIFIED", "DELETED", "DELETED", "ADDED", "ADDED"]


async def test_deleting_a_deployment_deletes_its_pods(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment(replicas=2))
    await kube_client.create(deployment("other", replicas=1))
    pods = pod_names(kube)
    await kube_client.delete(Deployment, "api")
    assert pod_names(kube) == [] and sorted(kube.deleted_pods) == pods
    assert len(pod_names(kube, "other")) == 1


async def test_pods_terminate_after_the_delay(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    kube.pod_termination_delay = 30
    await kube_client.create(deployment(replicas=2))
    doomed, survivor = pod_names(kube)
    await kube_client.delete(Pod, doomed)
    lingering = await kube_client.get(Pod, doomed)
    assert lingering.metadata is not None and lingering.metadata.deletionTimestamp is not None
    assert len(pod_names(kube)) == 2 and doomed not in pod_names(kube)  # replaced at once, as a ReplicaSet does
    await kube.settle()
    assert kube.get("pods", doomed) is not None
    kube.advance(31)
    await kube.settle()
    assert kube.get("pods", doomed) is None and kube.deleted_pods == [doomed]
    await kube_client.delete(Deployment, "api")
    assert len(kube.objects("pods")) == 2  # terminating, with their owner gone
    kube.advance(31)
    assert kube.objects("pods") == [] and survivor in kube.deleted_pods


# -- logs --------------------------------------------------------------------------------------------------------


async def test_logs_with_tail_and_follow(kube: Emulator, kube_client: lightkube.AsyncClient) -> None:
    await kube_client.create(deployment(replicas=1))
    (pod,) = pod_names(kube)
    kube.set_logs(pod, "api", ["one", "two", "three"])
    assert [line async for line in kube_client.log(pod, container="api")] == ["one\n", "two\n", "three\n"]
    assert [line async for line in kube_client.log(pod, tail_lines=2)] == ["two\n", "three\n"]
    # timestamps=true: each line after when it was written, RFC 3339 with nanoseconds
    (stamped,) = [line async for line in kube_client.log(pod, tail_lines=1, timestamps=True)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z three\n", stamped), stamped
    followed = aiter(kube_client.log(pod, container="api", follow=True, tail_lines=1))
    try:
        assert await asyncio.wait_for(anext(followed), WAIT) == "three\n"
        kube.append_log(pod, "api", "four", "five")
        assert [await asyncio.wait_for(anext(followed), WAIT) for _ in range(2)] == ["four\n", "five\n"]
        await kube_client.delete(Pod, pod)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(followed), WAIT)  # the pod is gone: the stream ends
    finally:
        if isinstance(followed, AsyncGenerator):
            await followed.aclose()
    assert await status_of(anext(aiter(kube_client.log("nope")))) == 404


# -- failures and bookkeeping ------------------------------------------------------------------------------------


async def test_fail_next_answers_the_next_requests_with_an_error(
    kube: Emulator, kube_client: lightkube.AsyncClient
) -> None:
    await kube_client.create(config_map("cm"))
    kube.fail_next(503, count=2)
    assert await status_of(kube_client.get(ConfigMap, "cm")) == 503
    assert await status_of(kube_client.create(config_map("other"))) == 503
    assert kube.get("configmaps", "other") is None
    assert (await kube_client.get(ConfigMap, "cm")).metadata is not None
    kube.fail_next(409)
    (event,) = await take(kube_client.watch(ConfigMap), 1)  # watches are not failed...
    assert event[0] == "ADDED"
    assert await status_of(kube_client.delete(ConfigMap, "cm")) == 409  # ...the next request is
    methods = [(method, path) for method, path, _ in kube.requests]
    assert methods[-1] == ("DELETE", "/api/v1/namespaces/cortex/configmaps/cm")


async def test_stopping_ends_open_streams() -> None:
    async with Emulator() as kube:
        client = lightkube.AsyncClient(config=client_config(kube.url))
        try:
            kube.put_object(deployment_dict(replicas=1))
            (pod,) = pod_names(kube)
            watch = aiter(client.watch(ConfigMap))
            logs = aiter(client.log(pod, follow=True))
            pending = [asyncio.ensure_future(anext(watch)), asyncio.ensure_future(anext(logs))]
            await until(lambda: len([r for r in kube.requests if r[0] == "GET"]) == 2)  # both streams are open
            await asyncio.wait_for(kube.stop(), WAIT)
            done, _ = await asyncio.wait(pending, timeout=WAIT)
            assert len(done) == 2
            assert "503" in str(pending[0].exception())  # the watch reconnected, and was refused
            assert isinstance(pending[1].exception(), StopAsyncIteration)  # the log stream ended
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("strategy", "replicas", "bounds"),
    [
        ({}, 4, (1, 1)),
        ({}, 10, (3, 2)),  # 25% of 10: surge rounds up, unavailable down
        ({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}, 3, (0, 1)),
        ({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "0%"}}, 3, (2, 0)),
        ({"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}, 3, (2, 1)),
    ],
)
def test_rolling_bounds(strategy: dict[str, Any], replicas: int, bounds: tuple[int, int]) -> None:
    assert rolling_bounds({"strategy": strategy}, replicas) == bounds


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=x", True),
        ("app==x,tier", True),
        ("app!=x", False),
        ("!tier", False),
        ("!gone,app", True),
        ("app in (x, y),tier notin (db)", True),
        ("app notin (x)", False),
        ("", True),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert matches_labels({"app": "x", "tier": "web"}, selector) is matches
