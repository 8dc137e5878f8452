"""The configuration contract: every validation of reference §6 (plus ours), defaults, parsing, errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cortex.errors import SpecError
from cortex.spec import (
    ApiSpec,
    format_duration,
    load_file,
    load_text,
    parse_cpu,
    parse_duration,
    parse_memory,
    parse_size,
)

DELETE = object()
PREFIX = 'cortex.yaml: api "hello" (#1): '


def base() -> dict[str, Any]:
    return {
        "name": "hello",
        "kind": "AsyncAPI",
        "pod": {"containers": [{"name": "web", "command": ["python", "server.py"]}]},
    }


def patched(patch: dict[str, Any]) -> dict[str, Any]:
    """``base()`` with ``{"pod.containers.0.name": value}``-style changes (DELETE removes a key)."""
    data = copy.deepcopy(base())
    for dotted, value in patch.items():
        *parents, last = [int(part) if part.isdigit() else part for part in dotted.split(".")]
        node: Any = data
        for part in parents:
            node = node[part] if isinstance(part, int) else node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


def load_one(patch: dict[str, Any] | None = None) -> ApiSpec:
    [spec] = load_text(yaml.safe_dump([patched(patch or {})]), "cortex.yaml")
    return spec


def error_of(text: str, source: str = "cortex.yaml") -> str:
    with pytest.raises(SpecError) as info:
        load_text(text, source)
    return str(info.value)


def container(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["run"], **extra}


CASES: list[tuple[dict[str, Any], str]] = [
    # name
    ({"name": DELETE}, "api #1: name: field required"),
    ({"name": "Web_1"}, 'name: must be lowercase letters, digits and dashes, starting with a letter (got "Web_1")'),
    ({"name": "1api"}, "name: must be lowercase letters, digits and dashes, starting with a letter"),
    ({"name": "api-"}, 'name: must not end with a dash (got "api-")'),
    ({"name": "a" * 43}, "name: must be at most 42 characters (got 43)"),
    ({"name": "b-api"}, 'name: must not start with "b-"'),
    (
        {"name": "h\u00e9llo"},
        'name: must be lowercase letters, digits and dashes, starting with a letter (got "h\u00e9llo")',
    ),
    ({"name": "../etc"}, 'name: must be lowercase letters, digits and dashes, starting with a letter (got "../etc")'),
    ({"name": "a%2fb"}, "name: must be lowercase letters, digits and dashes"),
    ({"name": 5}, "api #1: name: must be a string (got 5)"),
    ({"name": ""}, "name: must not be empty"),
    # kind
    ({"kind": DELETE}, "kind: field required"),
    ({"kind": "RealtimeAPI"}, "kind: RealtimeAPI is not supported: only AsyncAPI is supported by cortex-async"),
    ({"kind": "BatchAPI"}, "kind: BatchAPI is not supported: only AsyncAPI is supported by cortex-async"),
    ({"kind": "TaskAPI"}, "only AsyncAPI is supported by cortex-async"),
    ({"kind": "TrafficSplitter"}, "only AsyncAPI is supported by cortex-async"),
    ({"kind": "asyncapi"}, 'kind: must be "AsyncAPI" (got "asyncapi")'),
    (
        {"predictor": {}},
        "predictor: unknown field (allowed: name, kind, pod, autoscaling, node_groups, "
        "update_strategy, networking, async, kubernetes)",
    ),
    # pod
    ({"pod": DELETE}, "pod: field required"),
    ({"pod": "web"}, 'pod: must be a mapping (got "web")'),
    ({"pod.port": 0}, "pod.port: must be >= 1 (got 0)"),
    ({"pod.port": 70000}, "pod.port: must be <= 65535 (got 70000)"),
    ({"pod.port": 8888}, "pod.port: must not be 8888 or 15000"),
    ({"pod.port": 15000}, "pod.port: must not be 8888 or 15000"),
    ({"pod.port": "8080"}, 'pod.port: must be an integer (got "8080")'),
    ({"pod.max_concurrency": 0}, "pod.max_concurrency: must be >= 1 (got 0)"),
    ({"pod.max_concurrency": 101}, "pod.max_concurrency: must be <= 100 (got 101)"),
    ({"pod.containers": []}, "pod.containers: must not be empty"),
    ({"pod.containers": DELETE}, "pod.containers: field required"),
    ({"pod.cpu": 1}, "pod.cpu: unknown field (allowed: port, max_concurrency, containers)"),
    ({"pod.max_queue_length": 5}, "pod.max_queue_length: unknown field"),
    # containers
    ({"pod.containers.0.name": DELETE}, "pod.containers[0].name: field required"),
    ({"pod.containers.0.name": "Web_1"}, "pod.containers[0].name: must be lowercase letters, digits and dashes"),
    ({"pod.containers.0.name": "w" * 64}, "pod.containers[0].name: must be at most 63 characters (got 64)"),
    ({"pod.containers.0.name": "dequeuer"}, 'pod.containers[0].name: "dequeuer" is reserved'),
    ({"pod.containers.0.name": "proxy"}, 'pod.containers[0].name: "proxy" is reserved'),
    (
        {"pod.containers": [container("a"), container("b"), container("a")]},
        'pod.containers[2].name: duplicate container name "a" (also containers[0])',
    ),
    ({"pod.containers.0.command": DELETE}, "pod.containers[0]: needs an image (run on Kubernetes) or a command"),
    ({"pod.containers.0.image": ""}, "pod.containers[0].image: must not be empty"),
    ({"pod.containers.0.image": 5}, "pod.containers[0].image: must be a string (got 5)"),
    ({"pod.containers.0.command": "python server.py"}, 'pod.containers[0].command: must be a list (got "python'),
    ({"pod.containers.0.args": ["--port", 80]}, "pod.containers[0].args[1]: must be a string (got 80)"),
    ({"pod.containers.0.env": ["A=1"]}, "pod.containers[0].env: must be a mapping of names to values (got a list)"),
    ({"pod.containers.0.env": {"CORTEX_PORT": "1"}}, "pod.containers[0].env.CORTEX_PORT: names starting with CORTEX_"),
    (
        {"pod.containers.0.env": {"KUBEXIT_X": "1"}},
        "env.KUBEXIT_X: names starting with CORTEX_ or KUBEXIT_ are reserved",
    ),
    ({"pod.containers.0.env": {"bad key": "1"}}, 'pod.containers[0].env.bad key: invalid variable name "bad key"'),
    ({"pod.containers.0.env": {"A": [1]}}, "pod.containers[0].env.A: must be a string, number or boolean (got a list)"),
    ({"pod.containers.0.env": {"A": None}}, "pod.containers[0].env.A: must be a string, number or boolean (got null)"),
    ({"pod.containers.0.ports": [80]}, "pod.containers[0].ports: unknown field (allowed: name, image, command, args,"),
    # compute
    ({"pod.containers.0.compute.cpu": "10m"}, 'pod.containers[0].compute.cpu: must be at least 20m (got "10m")'),
    ({"pod.containers.0.compute.cpu": "lots"}, 'compute.cpu: invalid CPU quantity "lots": use a number of cores'),
    ({"pod.containers.0.compute.mem": "10Mi"}, 'pod.containers[0].compute.mem: must be at least 20Mi (got "10Mi")'),
    ({"pod.containers.0.compute.mem": "100m"}, 'compute.mem: invalid memory quantity "100m"'),
    ({"pod.containers.0.compute.gpu": -1}, "pod.containers[0].compute.gpu: must be >= 0 (got -1)"),
    ({"pod.containers.0.compute.gpu": 1.5}, "pod.containers[0].compute.gpu: must be an integer (got 1.5)"),
    ({"pod.containers.0.compute.inf": -1}, "pod.containers[0].compute.inf: must be >= 0 (got -1)"),
    (
        {"pod.containers.0.compute": {"mem": "1Gi", "shm": "2Gi"}},
        'pod.containers[0].compute.shm: must not exceed mem (got "2Gi" > "1Gi")',
    ),
    ({"pod.containers.0.compute.shm": "big"}, 'compute.shm: invalid memory quantity "big"'),
    (
        {"pod.containers": [container("a", compute={"gpu": 1}), container("b", compute={"inf": 1})]},
        "pod.containers: GPU and Inferentia can't both be used in one pod (gpu: a; inf: b)",
    ),
    ({"pod.containers.0.compute.memory": "1Gi"}, "compute.memory: unknown field (allowed: cpu, mem, gpu, inf, shm)"),
    # readiness probe
    (
        {"pod.containers.0.readiness_probe": {"exec": {"command": ["true"]}}},
        "pod.containers[0].readiness_probe.exec: AsyncAPI readiness probes can't use exec",
    ),
    (
        {"pod.containers.0.readiness_probe": {"period_seconds": 5}},
        "pod.containers[0].readiness_probe: must have exactly one of http_get, tcp_socket (got none)",
    ),
    (
        {"pod.containers.0.readiness_probe": {"http_get": {"port": 80}, "tcp_socket": {"port": 80}}},
        "readiness_probe: must have exactly one of http_get, tcp_socket (got http_get, tcp_socket)",
    ),
    ({"pod.containers.0.readiness_probe.http_get": {}}, "readiness_probe.http_get.port: field required"),
    ({"pod.containers.0.readiness_probe.http_get.port": 8888}, "http_get.port: must not be 8888 or 15000"),
    ({"pod.containers.0.readiness_probe.http_get.port": 15000}, "http_get.port: must not be 8888 or 15000"),
    ({"pod.containers.0.readiness_probe.http_get.port": 0}, "readiness_probe.http_get.port: must be >= 1"),
    ({"pod.containers.0.readiness_probe.http_get.port": "80"}, 'http_get.port: must be an integer (got "80")'),
    (
        {"pod.containers.0.readiness_probe.http_get": {"port": 80, "path": "health"}},
        'readiness_probe.http_get.path: must start with "/"',
    ),
    ({"pod.containers.0.readiness_probe.tcp_socket.port": 70000}, "tcp_socket.port: must be <= 65535"),
    *[
        (
            {"pod.containers.0.readiness_probe": {"tcp_socket": {"port": 80}, field: 0}},
            f"pod.containers[0].readiness_probe.{field}: must be >= 1 (got 0)",
        )
        for field in ("timeout_seconds", "period_seconds", "success_threshold", "failure_threshold")
    ],
    (
        {"pod.containers.0.readiness_probe": {"tcp_socket": {"port": 80}, "initial_delay_seconds": -1}},
        "readiness_probe.initial_delay_seconds: must be >= 0 (got -1)",
    ),
    (
        {"pod.containers.0.readiness_probe": {"tcp_socket": {"port": 80}, "grpc": {}}},
        "readiness_probe.grpc: unknown field (allowed: http_get, tcp_socket, exec, initial_delay_seconds,",
    ),
    # liveness probe and pre_stop
    (
        {"pod.containers.0.liveness_probe": {}},
        "pod.containers[0].liveness_probe: must have exactly one of http_get, tcp_socket, exec (got none)",
    ),
    ({"pod.containers.0.liveness_probe.exec": {}}, "liveness_probe.exec.command: field required"),
    ({"pod.containers.0.liveness_probe.exec.command": []}, "liveness_probe.exec.command: must not be empty"),
    (
        {"pod.containers.0.liveness_probe": {"exec": {"command": ["true"]}, "period_seconds": 0}},
        "liveness_probe.period_seconds: must be >= 1 (got 0)",
    ),
    (
        {"pod.containers.0.pre_stop": {"http_get": {"port": 80}, "exec": {"command": ["stop"]}}},
        "pod.containers[0].pre_stop: must have exactly one of http_get, exec (got both)",
    ),
    ({"pod.containers.0.pre_stop": {}}, "pre_stop: must have exactly one of http_get, exec (got none)"),
    (
        {"pod.containers.0.pre_stop": {"tcp_socket": {"port": 80}}},
        "pre_stop.tcp_socket: unknown field (allowed: http_get, exec)",
    ),
    # autoscaling
    ({"autoscaling": 5}, "autoscaling: must be a mapping (got 5)"),
    ({"autoscaling.min_replicas": -1}, "autoscaling.min_replicas: must be >= 0 (got -1)"),
    ({"autoscaling.max_replicas": 0}, "autoscaling.max_replicas: must be > 0 (got 0)"),
    (
        {"autoscaling": {"min_replicas": 5, "max_replicas": 3}},
        "autoscaling.max_replicas: must be >= min_replicas (got 3 < 5)",
    ),
    ({"autoscaling.init_replicas": 200}, "autoscaling.init_replicas: must be between min_replicas and max_replicas"),
    (
        {"autoscaling": {"min_replicas": 2, "init_replicas": 1}},
        "autoscaling.init_replicas: must be between min_replicas and max_replicas (got 1, not in 2..100)",
    ),
    ({"autoscaling.init_replicas": -1}, "autoscaling.init_replicas: must be >= 0 (got -1)"),
    ({"autoscaling.target_in_flight": 0}, "autoscaling.target_in_flight: must be > 0 (got 0)"),
    ({"autoscaling.target_in_flight": "2"}, 'autoscaling.target_in_flight: must be a number (got "2")'),
    ({"autoscaling.window": "15s"}, "autoscaling.window: must be at least 10s and a multiple of 10s (got 15s)"),
    ({"autoscaling.window": "5s"}, "autoscaling.window: must be at least 10s and a multiple of 10s (got 5s)"),
    ({"autoscaling.window": "soon"}, 'autoscaling.window: invalid duration "soon": use a number of seconds'),
    ({"autoscaling.window": True}, "autoscaling.window: must be a duration"),
    ({"autoscaling.downscale_stabilization_period": "-1s"}, "downscale_stabilization_period: must be at least 0s"),
    ({"autoscaling.upscale_stabilization_period": -5}, "upscale_stabilization_period: must be at least 0s (got -5s)"),
    ({"autoscaling.max_downscale_factor": 1}, "autoscaling.max_downscale_factor: must be < 1 (got 1)"),
    ({"autoscaling.max_downscale_factor": -0.1}, "autoscaling.max_downscale_factor: must be >= 0 (got -0.1)"),
    ({"autoscaling.max_upscale_factor": 1}, "autoscaling.max_upscale_factor: must be > 1 (got 1)"),
    ({"autoscaling.downscale_tolerance": 1}, "autoscaling.downscale_tolerance: must be < 1 (got 1)"),
    ({"autoscaling.upscale_tolerance": -0.1}, "autoscaling.upscale_tolerance: must be >= 0 (got -0.1)"),
    ({"autoscaling.upscale_tolerance": float("inf")}, "autoscaling.upscale_tolerance: must be a finite number"),
    (
        {"autoscaling.target_replica_concurrency": 1},
        "autoscaling.target_replica_concurrency: unknown field (allowed: min_replicas, max_replicas,",
    ),
    # node_groups
    ({"node_groups": []}, "node_groups: must not be empty"),
    ({"node_groups": ["ok", "not ok"]}, "node_groups[1]: must be letters, digits, '-' and '_' (got \"not ok\")"),
    ({"node_groups": "ng-1"}, 'node_groups: must be a list (got "ng-1")'),
    # update_strategy
    ({"update_strategy.max_surge": "abc"}, "update_strategy.max_surge: must be a non-negative integer or a percentage"),
    ({"update_strategy.max_surge": "12.5%"}, "update_strategy.max_surge: must be a non-negative integer or a percen"),
    ({"update_strategy.max_unavailable": -1}, "update_strategy.max_unavailable: must be a non-negative integer or"),
    (
        {"update_strategy": {"max_surge": 0, "max_unavailable": "0%"}},
        "update_strategy: max_surge and max_unavailable can't both be 0",
    ),
    ({"update_strategy.batch": 1}, "update_strategy.batch: unknown field (allowed: max_surge, max_unavailable)"),
    # kube-apiserver's own rule: a Deployment with maxUnavailable over 100% is refused with 422
    (
        {"update_strategy.max_unavailable": "101%"},
        'update_strategy.max_unavailable: must not be greater than 100% (got "101%")',
    ),
    # kubernetes (our extension): checked as kube-apiserver checks the pod fields they become
    (
        {"kubernetes.runtime_class_name": "Bad_Name"},
        "kubernetes.runtime_class_name: must be lower-case letters, digits",
    ),
    ({"kubernetes.priority_class_name": "x" * 254}, "kubernetes.priority_class_name: must be at most 253 characters"),
    (
        {"kubernetes.node_selector": {"bad key!": "a"}},
        "kubernetes.node_selector.bad key!: label key: must be at most 63",
    ),
    (
        {"kubernetes.node_selector": {"example.com/pool": "a b"}},
        "kubernetes.node_selector.example.com/pool: must be empty or",
    ),
    ({"kubernetes.node_selector": {"Bad_Domain/pool": "a"}}, 'label key: prefix "Bad_Domain": must be lower-case'),
    (
        {"kubernetes.tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]},
        "kubernetes.tolerations[0].value: must be empty when operator is Exists",
    ),
    (
        {"kubernetes.tolerations": [{"value": "b"}]},
        "kubernetes.tolerations[0].operator: must be Exists when key is empty",
    ),
    (
        {"kubernetes.tolerations": [{"key": "a", "toleration_seconds": 30}]},
        "kubernetes.tolerations[0].effect: must be NoExecute when toleration_seconds is set",
    ),
    ({"kubernetes.tolerations": [{"key": "a", "effect": "Never"}]}, "kubernetes.tolerations[0].effect: must be one of"),
    ({"kubernetes.gpu_resource": "gpu"}, 'kubernetes.gpu_resource: must have a domain prefix, as in "nvidia.com/gpu"'),
    (
        {"kubernetes.gpu_resource": "kubernetes.io/gpu"},
        "kubernetes.gpu_resource: must not be in the kubernetes.io domain",
    ),
    ({"kubernetes.node_groups": ["a"]}, "kubernetes.node_groups: unknown field (allowed: runtime_class_name,"),
    # networking
    ({"networking.endpoint": "/"}, "networking.endpoint: must name a path other than '/'"),
    ({"networking.endpoint": "a//b"}, "networking.endpoint: must not contain '//' (got \"a//b\")"),
    ({"networking.endpoint": "a b"}, "networking.endpoint: may only contain letters, digits"),
    ({"networking.endpoint": "x" * 1001}, "networking.endpoint: must be at most 1000 characters (got 1001)"),
    ({"networking.endpoint": "a/../b"}, "networking.endpoint: must not contain '.' or '..' segments (got \"a/../b\")"),
    ({"networking.endpoint": "./a"}, "networking.endpoint: must not contain '.' or '..' segments"),
    ({"networking.endpoint": "/metrics"}, "networking.endpoint: /metrics is served by the gateway itself"),
    ({"networking.endpoint": "openapi.json"}, "networking.endpoint: /openapi.json is served by the gateway itself"),
    ({"name": "healthz"}, "networking.endpoint: /healthz is served by the gateway itself; set networking.endpoint"),
    ({"networking.api_gateway": "public"}, "networking.api_gateway: unknown field (allowed: endpoint)"),
    # async (our extension)
    ({"async.retention": "30s"}, "async.retention: must be at least 1m (got 30s)"),
    ({"async.retention": "a week"}, 'async.retention: invalid duration "a week"'),
    ({"async.max_payload_size": 0}, "async.max_payload_size: must be > 0 (got 0)"),
    ({"async.max_payload_size": "lots"}, 'async.max_payload_size: invalid size "lots"'),
    ({"async.request_timeout": 0}, "async.request_timeout: must be greater than 0s (got 0s)"),
    ({"async.max_attempts": 0}, "async.max_attempts: must be >= 1 (got 0)"),
    ({"async.max_attempts": 101}, "async.max_attempts: must be <= 100 (got 101)"),
    (
        {"async.retries": 3},
        "async.retries: unknown field (allowed: retention, max_payload_size, request_timeout, max_attempts,"
        " retry, webhook, api_keys, forward_sensitive_headers)",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), CASES, ids=[expected[:70] for _, expected in CASES])
def test_validation_table(patch: dict[str, Any], expected: str) -> None:
    message = error_of(yaml.safe_dump([patched(patch)]))
    assert expected in message
    assert all(line.startswith("cortex.yaml: api ") for line in message.splitlines())


def test_error_names_file_api_and_path() -> None:
    message = error_of(yaml.safe_dump([patched({"pod.containers.0.name": "Web_1"})]))
    assert message == (
        PREFIX + "pod.containers[0].name: must be lowercase letters, digits and dashes, "
        'starting with a letter (got "Web_1")'
    )


def test_several_errors_one_per_line() -> None:
    second = patched({"name": DELETE, "pod.port": 0})
    message = error_of(yaml.safe_dump([patched({"pod.cpu": 1}), second]))
    assert message.splitlines() == [
        PREFIX + "pod.cpu: unknown field (allowed: port, max_concurrency, containers)",
        "cortex.yaml: api #2: name: field required",
        "cortex.yaml: api #2: pod.port: must be >= 1 (got 0)",
    ]


def test_defaults_are_filled() -> None:
    spec = load_one()
    assert spec.pod.port == 8080
    assert spec.pod.max_concurrency == 1
    assert spec.autoscaling.min_replicas == spec.autoscaling.init_replicas == 1
    assert spec.autoscaling.max_replicas == 100
    assert spec.autoscaling.target_in_flight == 1.0
    assert (spec.autoscaling.window, spec.autoscaling.downscale_stabilization_period) == (60.0, 300.0)
    assert spec.autoscaling.upscale_stabilization_period == 60.0
    assert spec.update_strategy.max_surge == spec.update_strategy.max_unavailable == "25%"
    assert spec.networking.endpoint == "/hello"
    assert spec.node_groups is None
    assert spec.async_.retention == 7 * 24 * 3600
    assert spec.async_.max_payload_size == 100 * 1024 * 1024
    assert spec.async_.request_timeout is None
    assert spec.async_.max_attempts == 3
    compute = spec.pod.containers[0].compute
    assert (compute.cpu, compute.mem, compute.gpu, compute.inf, compute.shm) == ("200m", None, 0, 0, None)
    assert spec.pod.containers[0].env == {}


def test_dependent_defaults_follow_their_source() -> None:
    spec = load_one({"autoscaling": {"min_replicas": 3}, "pod.max_concurrency": 8})
    assert spec.autoscaling.init_replicas == 3
    assert spec.autoscaling.target_in_flight == 8.0
    explicit = load_one({"autoscaling": {"init_replicas": 5, "target_in_flight": 2.5}, "pod.max_concurrency": 8})
    assert (explicit.autoscaling.init_replicas, explicit.autoscaling.target_in_flight) == (5, 2.5)


def test_empty_sections_mean_defaults() -> None:
    spec = load_text("- name: a\n  kind: AsyncAPI\n  pod:\n    containers: [{name: a, image: x}]\n  autoscaling:\n")[0]
    assert spec.autoscaling.init_replicas == 1


@pytest.mark.parametrize(
    ("endpoint", "canonical"),
    [("hello", "/hello"), ("/v1/hello/", "/v1/hello"), ("a/b.c_d-e", "/a/b.c_d-e"), ("/x", "/x")],
)
def test_endpoint_is_canonicalised(endpoint: str, canonical: str) -> None:
    assert load_one({"networking.endpoint": endpoint}).networking.endpoint == canonical


def test_values_are_normalised() -> None:
    spec = load_one(
        {
            "pod.containers.0.env": {"A": 1, "B": True, "C": 1.5, "D": False, "E": "x"},
            "pod.containers.0.compute": {"cpu": 1, "mem": "1Gi", "shm": "64Mi"},
            "pod.containers.0.readiness_probe": {"http_get": {"port": 8080}},
            "update_strategy": {"max_surge": "2", "max_unavailable": 0},
            "autoscaling": {"window": "2m", "downscale_stabilization_period": "1h30m"},
            "async": {"retention": "1d", "max_payload_size": "10MB", "request_timeout": "90s"},
        }
    )
    container = spec.pod.containers[0]
    assert container.env == {"A": "1", "B": "true", "C": "1.5", "D": "false", "E": "x"}
    assert (container.compute.cpu, container.compute.cpu_millicores) == ("1", 1000)
    assert (container.compute.mem_bytes, container.compute.shm_bytes) == (2**30, 64 * 2**20)
    assert container.readiness_probe is not None and container.readiness_probe.http_get is not None
    assert container.readiness_probe.http_get.path == "/"
    assert (container.readiness_probe.period_seconds, container.readiness_probe.failure_threshold) == (10, 3)
    assert (spec.update_strategy.max_surge, spec.update_strategy.max_unavailable) == (2, 0)
    assert (spec.autoscaling.window, spec.autoscaling.downscale_stabilization_period) == (120.0, 5400.0)
    assert (spec.async_.retention, spec.async_.max_payload_size, spec.async_.request_timeout) == (86400, 10**7, 90)


def test_liveness_probe_and_pre_stop_accept_exec() -> None:
    spec = load_one(
        {
            "pod.containers.0.liveness_probe": {"exec": {"command": ["test", "-f", "/tmp/ok"]}},
            "pod.containers.0.pre_stop": {"exec": {"command": ["drain"]}},
        }
    )
    container = spec.pod.containers[0]
    assert container.liveness_probe is not None and container.liveness_probe.exec is not None
    assert container.pre_stop is not None and container.pre_stop.exec is not None


def full_spec() -> ApiSpec:
    return load_one(
        {
            "pod.containers": [
                container("web", image="img:1", args=["--x"], env={"K": "v"}, compute={"mem": "1Gi", "gpu": 1}),
                container("side", readiness_probe={"tcp_socket": {"port": 9000}}),
            ],
            "node_groups": ["gpu-ng"],
            "async": {"request_timeout": "5m", "max_attempts": 2},
        }
    )


def test_round_trip_through_json() -> None:
    spec = full_spec()
    stored = json.loads(json.dumps(spec.to_dict()))
    assert "async" in stored and "async_" not in stored
    again = ApiSpec.from_dict(stored)
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert ApiSpec.model_validate(spec.model_dump(by_alias=True)) == spec


def test_spec_id_is_stable() -> None:
    spec = full_spec()
    assert len(spec.spec_id()) == 16
    assert ApiSpec.from_dict(spec.to_dict()).spec_id() == spec.spec_id()
    reordered = dict(reversed(list(spec.to_dict().items())))
    assert ApiSpec.from_dict(reordered).spec_id() == spec.spec_id()
    # The same settings spelled differently are the same spec.
    assert load_one({"autoscaling.window": "1m"}).spec_id() == load_one({"autoscaling.window": 60}).spec_id()
    assert load_one({"pod.max_concurrency": 2}).spec_id() != load_one().spec_id()


def test_from_dict_raises_spec_error() -> None:
    data = full_spec().to_dict()
    data["pod"]["port"] = 0
    with pytest.raises(SpecError, match=r'<stored spec>: api "hello": pod.port: must be >= 1'):
        ApiSpec.from_dict(data)


# --- files and file-level errors ------------------------------------------------------------------


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "cortex.yaml"
    path.write_text(yaml.safe_dump([base(), patched({"name": "other"})]))
    assert [spec.name for spec in load_file(path)] == ["hello", "other"]


def test_load_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "apis.yaml"
    path.write_text(yaml.safe_dump([patched({"pod.port": 0})]))
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(info.value) == f'{path}: api "hello" (#1): pod.port: must be >= 1 (got 0)'


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "missing.yaml: file not found"),
        ("directory", "is a directory"),
        ("binary", "not UTF-8 text"),
    ],
)
def test_unreadable_files(tmp_path: Path, setup: str, expected: str) -> None:
    path = tmp_path / f"{setup}.yaml"
    if setup == "directory":
        path.mkdir()
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError, match=expected):
        load_file(path)


FILE_CASES = [
    ("- name: a\n  kind: AsyncAPI\n  pod: {containers: [\n", "cortex.yaml: invalid YAML at line 4"),
    ("- name: a\n  kind: AsyncAPI\n\n  pod: x: y\n", "cortex.yaml: invalid YAML at line 4"),
    ("- name: a\n  kind: AsyncAPI\n  name: b\n", 'cortex.yaml: invalid YAML at line 3, column 3: duplicate key "name"'),
    ("", "cortex.yaml: the file is empty"),
    ("# only a comment\n", "cortex.yaml: the file is empty"),
    ("name: a\nkind: AsyncAPI\n", "cortex.yaml: the top level must be a list of APIs, not a mapping"),
    ("hello\n", 'cortex.yaml: the top level must be a list of APIs (got "hello")'),
    ("[]\n", "cortex.yaml: the list of APIs is empty"),
    ("- just-a-string\n", 'cortex.yaml: api #1: must be a mapping with name, kind and pod (got "just-a-string")'),
    ("- {1: x}\n", "cortex.yaml: api #1: unknown field 1 (allowed: name, kind, pod,"),
    ("- name: a\n\tkind: AsyncAPI\n", "cortex.yaml: invalid YAML at line 2, column 1: found a tab character"),
    (
        "- !!python/object/apply:os.system [id]\n",
        "cortex.yaml: invalid YAML at line 1, column 3: could not determine a",
    ),
    ("- name: a\n---\n- name: b\n", "cortex.yaml: invalid YAML at line 2, column 1: but found another document"),
    ("- name: *nowhere\n", "cortex.yaml: invalid YAML at line 1, column 9: found undefined alias"),
    pytest.param(
        "[" * 100_000 + "]" * 100_000,
        "cortex.yaml: invalid YAML at line 1, column 1001: exceeded maximum nesting depth",
        id="deeply-nested",
    ),
    ("- name: a\n  kind: \x00\n", "cortex.yaml: invalid YAML at line 2: control characters are not allowed (U+0000)"),
    ("- null\n", "cortex.yaml: api #1: must be a mapping with name, kind and pod (got null)"),
    ("- name: 2024-01-01\n", "cortex.yaml: api #1: name: must be a string (got the date 2024-01-01)"),
    ("- name: !!binary aGk=\n", "cortex.yaml: api #1: name: must be a string (got binary data)"),
]


@pytest.mark.parametrize(("text", "expected"), FILE_CASES)
def test_file_level_errors(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_duplicate_names_name_both_apis() -> None:
    first = patched({"networking.endpoint": "/one"})
    message = error_of(yaml.safe_dump([first, patched({"networking.endpoint": "/two"})]))
    assert message == 'cortex.yaml: api "hello" (#2): name: duplicate API name "hello" (also api "hello" (#1))'


def test_duplicate_endpoints_name_both_apis() -> None:
    apis = [base(), patched({"name": "other"}), patched({"name": "third", "networking.endpoint": "hello/"})]
    message = error_of(yaml.safe_dump(apis))
    assert message == (
        'cortex.yaml: api "third" (#3): networking.endpoint: "/hello" is already the endpoint of api "hello" (#1)'
    )


# --- durations and quantities -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("0s", 0),
        ("0", 0),
        ("7d", 604800),
        ("1d12h", 129600),
        ("250us", 0.00025),
        ("1µs", 0.000001),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("-1m", -60),
        (" 30s ", 30),
        ("90", 90),
        ("1.5", 1.5),
        (45, 45),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "1h 30m", "m", "s5", "1hh", "1.2.3s", "inf", "nan", "1e999"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'a duration such as "30s", "5m", "1h30m"'):
        parse_duration(text)


def test_parse_duration_rejects_non_numbers() -> None:
    for value in (True, float("inf")):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3600, "1h"),
        (90, "1m30s"),
        (0, "0s"),
        (0.5, "500ms"),
        (604800, "7d"),
        (90061, "1d1h1m1s"),
        (1.5, "1.5s"),
        (61.25, "1m1.25s"),
        (0.000002, "2us"),
        (1e-9, "1ns"),
        (-60, "-1m"),
        (300.0, "5m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "millicores"),
    [("200m", 200), (1, 1000), ("1.5", 1500), (0.5, 500), ("2", 2000), ("20m", 20), ("0.0001", 1), ("1e1", 10000)],
)
def test_parse_cpu(value: str | int | float, millicores: int) -> None:
    assert parse_cpu(value) == millicores


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1Gi", 2**30),
        ("100Mi", 100 * 2**20),
        ("512M", 512 * 10**6),
        ("1e9", 10**9),
        (1024, 1024),
        ("1.5Ki", 1536),
        ("2k", 2000),
        ("1Ti", 2**40),
        ("1E", 10**18),
    ],
)
def test_parse_memory(value: str | int, size: int) -> None:
    assert parse_memory(value) == size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("100Mi", 100 * 2**20),
        ("10MB", 10**7),
        ("512KiB", 512 * 1024),
        ("1G", 10**9),
        ("2gib", 2 * 2**30),
        (4096, 4096),
        ("123", 123),
        ("10 MB", 10**7),
        ("1b", 1),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        (parse_cpu, "200 m", "millicores such as"),
        (parse_cpu, "1Gi", "millicores such as"),
        (parse_cpu, -1, "must not be negative"),
        (parse_memory, "100m", 'Kubernetes quantity such as "512Mi"'),
        (parse_memory, "1GB", 'Kubernetes quantity such as "512Mi"'),
        (parse_memory, -5, "must not be negative"),
        (parse_size, "10 parsecs", 'a size such as "100Mi", "10MB"'),
        (parse_size, "-1MB", 'a size such as "100Mi", "10MB"'),
        (parse_size, True, "size"),
    ],
)
def test_quantities_reject(parse: Any, value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse(value)


def test_async_retry_and_webhook_defaults_and_errors() -> None:
    base = "- name: a\n  kind: AsyncAPI\n  pod: {containers: [{name: api, command: [x]}]}\n"
    (spec,) = load_text(base)
    assert spec.async_.retry.connection and not spec.async_.retry.http_5xx and spec.async_.retry.backoff == 1.0
    assert spec.async_.webhook is None
    (spec,) = load_text(base + "  async: {webhook: {url: 'https://hooks.example/x'}, retry: {http_5xx: true}}\n")
    assert spec.async_.webhook is not None
    assert spec.async_.webhook.events == ["completed", "failed", "cancelled"] and spec.async_.webhook.max_age == 86400
    for bad, words in [
        ("{webhook: {url: 'ftp://x'}}", "async.webhook.url: must be an http:// or https:// URL"),
        ("{webhook: {url: 'http://x', events: [completed, completed]}}", "async.webhook.events: lists an entry twice"),
        ("{webhook: {url: 'http://x', events: []}}", "async.webhook.events"),
        ("{retry: {http_5xx: maybe}}", "async.retry.http_5xx"),
        ("{retry: {backoff: 0s}}", "async.retry.backoff"),
    ]:
        with pytest.raises(SpecError) as info:
            load_text(base + f"  async: {bad}\n", "c.yaml")
        assert words in str(info.value)
