"""The Kubernetes runtime against the emulator: create, scale, roll, delete, safe scale-in, logs, restarts."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import lightkube
import pytest
from aiohttp import web

from cortex.errors import CortexError
from cortex.runtime.kubeobjects import DELETION_COST, KubeSettings
from cortex.runtime.kubernetes import KubernetesRuntime, dequeuer_loads
from cortex.spec import ApiSpec, load_text
from tests.helpers import one_route
from tests.kube.conftest import NAMESPACE, client_config
from tests.kube.emulator import Emulator
from tests.kube.schemas import validation_error

API = """
- name: worker
  kind: AsyncAPI
  pod:
    port: 8080
    containers:
      - name: api
        image: registry.example.com/worker:{tag}
  update_strategy: {{max_surge: 1, max_unavailable: 0}}
"""

SETTINGS = KubeSettings(namespace=NAMESPACE, image="registry.example.com/cortex-async:test", grace_period=5)


def spec(tag: str = "1") -> ApiSpec:
    (api,) = load_text(API.format(tag=tag), "cortex.yaml")
    return api


class Loads:
    """The in-flight counts the runtime reads before a scale-in, set by the test per pod."""

    def __init__(self) -> None:
        self.by_pod: dict[str, int | None] = {}
        self.asked: list[list[str]] = []

    async def __call__(self, pods: list[dict[str, Any]]) -> dict[str, int | None]:
        names = [pod["metadata"]["name"] for pod in pods]
        self.asked.append(names)
        return {name: self.by_pod.get(name) for name in names}


@pytest.fixture
def loads() -> Loads:
    return Loads()


@pytest.fixture
async def runtime(kube: Emulator, loads: Loads) -> AsyncIterator[KubernetesRuntime]:
    client = lightkube.AsyncClient(config=client_config(kube.url))
    runtime = KubernetesRuntime(client, SETTINGS, pod_loads=loads, sync_timeout=5)
    await runtime.start()
    yield runtime
    await runtime.aclose()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (the watch brings the emulator's changes): a bounded wait, never a sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


def states(runtime: KubernetesRuntime) -> list[str]:
    return sorted(replica.state.value for replica in runtime.replicas("worker"))


def pod_names(kube: Emulator) -> list[str]:
    return sorted(pod["metadata"]["name"] for pod in kube.objects("pods", NAMESPACE))


async def test_create_applies_a_valid_deployment_and_its_pods_become_replicas(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=2)
    deployment = kube.get("deployments", "api-worker")
    assert deployment is not None
    assert validation_error({k: v for k, v in deployment.items() if k != "status"}) is None
    assert deployment["spec"]["replicas"] == 2
    # server-side apply, as its field manager
    assert any(m == "PATCH" and "apply-patch" in (ct or "") for m, _, ct in kube.requests)
    assert runtime.requested("worker") == 2
    await eventually(lambda: states(runtime) == ["ready", "ready"], "two ready replicas")
    replica = runtime.replicas("worker")[0]
    assert replica.api == "worker" and replica.deployment_id == "d1" and replica.id.startswith("api-worker-")


async def test_scale_goes_through_the_scale_subresource(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await runtime.scale("worker", 3)
    assert any(m == "PATCH" and path.endswith("/deployments/api-worker/scale") for m, path, _ in kube.requests)
    assert runtime.requested("worker") == 3
    await eventually(lambda: len(runtime.replicas("worker")) == 3, "three replicas")
    await runtime.scale("worker", 0)  # scale to zero
    await eventually(lambda: runtime.replicas("worker") == [], "no replica")
    assert kube.get("deployments", "api-worker")["spec"]["replicas"] == 0  # type: ignore[index]


async def test_scale_in_marks_idle_pods_so_they_are_removed_before_busy_ones(
    kube: Emulator, runtime: KubernetesRuntime, loads: Loads
) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=3)
    await eventually(lambda: states(runtime) == ["ready"] * 3, "three ready replicas")
    busy, idle, unknown = pod_names(kube)
    loads.by_pod = {busy: 2, idle: 0}  # `unknown`'s dequeuer did not answer
    await runtime.scale("worker", 1)
    assert [sorted(names) for names in loads.asked] == [sorted([busy, idle, unknown])]
    # each pod was marked before the count went down
    writes = [path.rsplit("/", 1)[1] for method, path, _ in kube.requests if method == "PATCH" and "/pods/" in path]
    assert sorted(writes) == sorted([busy, idle, unknown])
    scaled = next(i for i, (m, path, _) in enumerate(kube.requests) if m == "PATCH" and path.endswith("/scale"))
    assert all("/pods/" not in path for _, path, _ in kube.requests[scaled:])
    (left,) = kube.objects("pods", NAMESPACE)
    assert left["metadata"]["annotations"][DELETION_COST] == "2"
    # the controller removed the idle pod first, then the one whose load was unknown; the busy one stays
    assert kube.deleted_pods == [idle, unknown]
    await eventually(lambda: [r.id for r in runtime.replicas("worker")] == [busy], "only the busy replica left")


async def test_loads_are_each_pods_own_for_the_queue_summary(
    kube: Emulator, runtime: KubernetesRuntime, loads: Loads
) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=2)
    await eventually(lambda: states(runtime) == ["ready"] * 2, "two ready replicas")
    busy, quiet = pod_names(kube)
    loads.by_pod = {busy: 1, quiet: 0}
    assert await runtime.loads("worker") == {busy: 1, quiet: 0}
    assert {replica.id for replica in runtime.replicas("worker")} == {busy, quiet}  # keyed as the replicas are
    assert await runtime.loads("nothing-deployed") == {}


async def test_scaling_out_asks_no_loads(runtime: KubernetesRuntime, loads: Loads) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await runtime.scale("worker", 2)
    assert loads.asked == []


async def test_a_new_deployment_id_rolls_the_pods_by_the_update_strategy(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    await runtime.apply(spec("1"), deployment_id="d1", config_dir=Path("."), replicas=2)
    await eventually(lambda: states(runtime) == ["ready", "ready"], "two ready replicas")
    old = pod_names(kube)
    kube.hold_ready = True  # new pods start not ready: the rollout waits on them (max_unavailable 0)
    await runtime.apply(spec("2"), deployment_id="d2", config_dir=Path("."), replicas=2)
    deployment = kube.get("deployments", "api-worker")
    assert deployment is not None
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["deploymentID"] == "d2"
    assert template["spec"]["containers"][0]["image"] == "registry.example.com/worker:2"
    # one surge pod, not ready yet; the old ones keep serving and are out of date
    await eventually(
        lambda: states(runtime) == ["not_ready", "ready_out_of_date", "ready_out_of_date"], "a surge pod beside two old"
    )
    for _ in range(4):  # make each new pod ready in turn: an old one goes each time
        for pod in kube.objects("pods", NAMESPACE):
            if pod["metadata"]["name"] not in old and not pod["metadata"].get("deletionTimestamp"):
                kube.make_ready(pod["metadata"]["name"])
        await kube.settle()
        assert len(kube.objects("pods", NAMESPACE)) <= 3  # replicas + max_surge
    await eventually(lambda: states(runtime) == ["ready", "ready"], "two ready replicas of d2")
    assert {r.deployment_id for r in runtime.replicas("worker")} == {"d2"}
    assert sorted(kube.deleted_pods) == sorted(old)


async def test_applying_the_same_deployment_again_keeps_the_autoscalers_count(
    kube: Emulator, runtime: KubernetesRuntime
) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await runtime.scale("worker", 4)
    await eventually(lambda: len(runtime.replicas("worker")) == 4, "four replicas")
    # what an operator restart does: apply every API with its catalog entry's (old) replica count
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    assert kube.get("deployments", "api-worker")["spec"]["replicas"] == 4  # type: ignore[index]
    assert runtime.requested("worker") == 4


async def test_delete_returns_once_the_pods_are_gone(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=2)
    await eventually(lambda: len(runtime.replicas("worker")) == 2, "two replicas")
    await runtime.delete("worker")
    assert kube.get("deployments", "api-worker") is None
    assert kube.objects("pods", NAMESPACE) == []
    assert runtime.replicas("worker") == [] and runtime.requested("worker") == 0
    await runtime.delete("worker")  # deleting what is gone is not an error


async def test_delete_waits_for_terminating_pods(kube: Emulator, runtime: KubernetesRuntime) -> None:
    kube.pod_termination_delay = 30.0
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await eventually(lambda: len(runtime.replicas("worker")) == 1, "one replica")
    deleting = asyncio.create_task(runtime.delete("worker"))
    await eventually(lambda: states(runtime) == ["terminating"], "a terminating replica")
    assert not deleting.done()  # the pod is still draining
    kube.advance(31.0)
    await asyncio.wait_for(deleting, 5)
    assert runtime.replicas("worker") == []


async def test_a_restarted_operator_finds_the_apis_as_they_are(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=3)
    await eventually(lambda: len(runtime.replicas("worker")) == 3, "three replicas")
    await runtime.aclose()  # the APIs keep running
    assert len(kube.objects("pods", NAMESPACE)) == 3
    again = KubernetesRuntime(lightkube.AsyncClient(config=client_config(kube.url)), SETTINGS, sync_timeout=5)
    await again.start()
    try:
        assert again.requested("worker") == 3
        assert states(again) == ["ready"] * 3
    finally:
        await again.aclose()


async def test_logs_of_every_container_prefixed_and_filtered(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await eventually(lambda: len(runtime.replicas("worker")) == 1, "one replica")
    (pod,) = pod_names(kube)
    kube.set_logs(pod, "dequeuer", ["dequeuer up"])
    kube.set_logs(pod, "api", ["starting"])
    kube.append_log(pod, "dequeuer", "request 01abc started")
    kube.append_log(pod, "api", "handled 01abc")
    kube.append_log(pod, "dequeuer", "request 01abc completed")
    lines = [line async for line in runtime.logs("worker", follow=False)]
    # merged by the API server's timestamps, not container by container
    assert lines == [
        f"[{pod} dequeuer] dequeuer up",
        f"[{pod} api] starting",
        f"[{pod} dequeuer] request 01abc started",
        f"[{pod} api] handled 01abc",
        f"[{pod} dequeuer] request 01abc completed",
    ]
    only = [line async for line in runtime.logs("worker", follow=False, request_id="01abc")]
    assert only == lines[2:]
    tail = [line async for line in runtime.logs("worker", follow=False, tail=2)]
    assert tail == lines[-2:]  # two lines overall
    assert [line async for line in runtime.logs("worker", follow=False, tail=1, replica=pod)] == lines[-1:]
    assert [line async for line in runtime.logs("worker", follow=False, replica="another-pod")] == []


async def test_logs_follow_streams_new_lines(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await eventually(lambda: len(runtime.replicas("worker")) == 1, "one replica")
    (pod,) = pod_names(kube)
    kube.set_logs(pod, "api", ["zero", "first"])
    kube.set_logs(pod, "dequeuer", ["dequeuer up"])
    stream = runtime.logs("worker", follow=True, tail=2)
    # the last two lines overall, then what comes, each line once
    assert [await asyncio.wait_for(anext(stream), 5) for _ in range(2)] == [
        f"[{pod} api] first",
        f"[{pod} dequeuer] dequeuer up",
    ]
    kube.append_log(pod, "api", "second")
    assert await asyncio.wait_for(anext(stream), 5) == f"[{pod} api] second"
    # a pod that starts later is followed too, from its first line
    await runtime.scale("worker", 2)
    await eventually(lambda: len(runtime.replicas("worker")) == 2, "two replicas")
    (new,) = set(pod_names(kube)) - {pod}
    kube.set_logs(new, "dequeuer", ["new replica up"])
    assert await asyncio.wait_for(anext(stream), 5) == f"[{new} dequeuer] new replica up"
    await stream.aclose()


async def test_kubernetes_errors_become_cortex_errors(kube: Emulator, runtime: KubernetesRuntime) -> None:
    kube.fail_next(403)
    with pytest.raises(CortexError, match=r"kubernetes: .*403"):
        await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    no_image = ApiSpec.from_dict(
        {"name": "local", "kind": "AsyncAPI", "pod": {"containers": [{"name": "api", "command": ["x"]}]}}
    )
    with pytest.raises(CortexError, match="no image"):
        await runtime.apply(no_image, deployment_id="d1", config_dir=Path("."), replicas=1)
    assert kube.get("deployments", "api-local") is None


async def test_an_unreachable_api_server_is_reported() -> None:
    client = lightkube.AsyncClient(config=client_config("http://127.0.0.1:9"))
    runtime = KubernetesRuntime(client, SETTINGS, sync_timeout=0.5)
    with pytest.raises(CortexError, match="did not list"):
        await runtime.start()


async def test_the_watch_lists_again_after_the_api_server_restarts(kube: Emulator, runtime: KubernetesRuntime) -> None:
    await runtime.apply(spec(), deployment_id="d1", config_dir=Path("."), replicas=1)
    await eventually(lambda: len(runtime.replicas("worker")) == 1, "one replica")
    port = int(kube.url.rsplit(":", 1)[1])
    await kube.stop()  # every watch breaks
    await kube.start(port)
    await runtime.scale("worker", 2)
    await eventually(lambda: len(runtime.replicas("worker")) == 2, "the watch caught up after the restart", 15)


async def test_dequeuer_loads_reads_each_dequeuers_status() -> None:
    async def status(request: web.Request) -> web.Response:
        return web.json_response({"api": "worker", "in_flight": 3, "probes": {}})

    async with one_route("/status", status) as url:
        port = int(url.rsplit(":", 1)[1])
        pods: list[dict[str, Any]] = [
            {"metadata": {"name": "answers"}, "status": {"podIP": "127.0.0.1"}},
            {"metadata": {"name": "no-ip"}, "status": {}},
        ]
        loads = await functools.partial(dequeuer_loads, port=port)(pods)
        assert loads == {"answers": 3, "no-ip": None}
