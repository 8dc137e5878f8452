"""What an API becomes on Kubernetes: strictly valid objects, checked field by field (``cortex render``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cortex.cli.main import cli
from cortex.errors import CortexError
from cortex.runtime.kubeobjects import KubeSettings, api_objects, go_duration
from cortex.spec import ApiSpec, load_file, load_text
from tests.kube.schemas import validation_error

EXAMPLES = sorted(Path(__file__).parents[2].joinpath("examples").glob("*/cortex.yaml"))

GPU_API = """
- name: transcriber
  kind: AsyncAPI
  pod:
    port: 9000
    max_concurrency: 4
    containers:
      - name: model
        image: registry.example.com/whisper:1.2
        command: ["python", "serve.py", "--port", "$(CORTEX_PORT)"]
        env: {MODEL: large-v3}
        compute: {cpu: "4", mem: 16Gi, gpu: 1, shm: 2Gi}
        readiness_probe: {http_get: {port: 9000, path: /ready}, period_seconds: 2}
        liveness_probe: {http_get: {port: 9000, path: /live}, initial_delay_seconds: 30, failure_threshold: 5}
        pre_stop: {exec: {command: ["sh", "-c", "sleep 5"]}}
      - name: uploader
        image: registry.example.com/uploader:3
        args: ["--watch", "/mnt/out"]
        compute: {cpu: 500m, mem: 1Gi}
        liveness_probe: {tcp_socket: {port: 9100}}
  node_groups: [gpu-a10, gpu-t4]
  update_strategy: {max_surge: 1, max_unavailable: 0}
  autoscaling: {min_replicas: 0, max_replicas: 8, init_replicas: 2, window: 2m, target_in_flight: 3}
"""

SETTINGS = KubeSettings(namespace="ml", image="registry.example.com/cortex-async:0.1.0", gateway_url="http://gw:8888")


def gpu_deployment() -> dict[str, Any]:
    (spec,) = load_text(GPU_API, "gpu.yaml")
    (deployment,) = api_objects(spec, deployment_id="d1", replicas=2, settings=SETTINGS)
    return deployment


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_renders_to_strictly_valid_objects(path: Path) -> None:
    specs = load_file(path)
    assert specs
    for spec in specs:
        objects = api_objects(spec, deployment_id="abc", replicas=spec.autoscaling.init_replicas, settings=SETTINGS)
        assert [obj["kind"] for obj in objects] == ["Deployment"]
        for obj in objects:
            assert validation_error(obj) is None, obj["metadata"]["name"]


def test_the_gpu_multi_container_api_is_strictly_valid() -> None:
    assert validation_error(gpu_deployment()) is None


def test_the_validation_catches_what_a_server_would_refuse() -> None:
    broken = gpu_deployment()
    broken["spec"]["replicas"] = "two"
    assert "spec.replicas" in (validation_error(broken) or "")
    broken = gpu_deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["readiness"] = {}
    assert "readiness" in (validation_error(broken) or "")


def test_the_deployment_carries_cortex_labels_and_annotations() -> None:
    deployment = gpu_deployment()
    (spec,) = load_text(GPU_API, "gpu.yaml")
    metadata = deployment["metadata"]
    assert metadata["name"] == "api-transcriber"
    assert metadata["namespace"] == "ml"
    assert metadata["labels"] == {
        "apiName": "transcriber",
        "apiKind": "AsyncAPI",
        "apiID": spec.spec_id(),
        "specID": spec.spec_id(),
        "deploymentID": "d1",
        "cortex.dev/api": "true",
    }
    assert deployment["spec"]["template"]["metadata"]["labels"] == metadata["labels"]
    # the selector never changes over the API's life: a new deployment id rolls pods, it does not orphan them
    assert deployment["spec"]["selector"] == {"matchLabels": {"apiName": "transcriber", "apiKind": "AsyncAPI"}}
    annotations = metadata["annotations"]
    assert annotations["networking.cortex.dev/endpoint"] == "/transcriber"
    assert annotations["pod.cortex.dev/max-concurrency"] == "4"
    assert annotations["autoscaling.cortex.dev/min-replicas"] == "0"
    assert annotations["autoscaling.cortex.dev/max-replicas"] == "8"
    assert annotations["autoscaling.cortex.dev/target-in-flight"] == "3"
    assert annotations["autoscaling.cortex.dev/window"] == "2m0s"
    assert annotations["autoscaling.cortex.dev/downscale-stabilization-period"] == "5m0s"
    assert not any("init" in key for key in annotations)  # Cortex left init_replicas out too


def test_replicas_update_strategy_and_grace_period() -> None:
    spec = gpu_deployment()["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["terminationGracePeriodSeconds"] == 60


def test_the_dequeuer_sidecar_runs_the_readiness_checks() -> None:
    by_name = containers(gpu_deployment())
    assert list(by_name) == ["model", "uploader", "dequeuer"]
    dequeuer = by_name["dequeuer"]
    assert dequeuer["image"] == "registry.example.com/cortex-async:0.1.0"
    assert dequeuer["command"] == ["python", "-m", "cortex.dequeuer"]
    args = dequeuer["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--api"] == "transcriber"
    assert options["--user-port"] == "9000"
    assert options["--admin-host"] == "0.0.0.0"
    assert options["--admin-port"] == "15000"
    assert int(options["--grace-period"]) < 60  # drains before the kubelet's SIGKILL
    assert dequeuer["envFrom"] == [{"secretRef": {"name": "cortex-backends"}}]
    assert env(dequeuer)["CORTEX_REPLICA_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert dequeuer["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert dequeuer["ports"] == [{"name": "admin", "containerPort": 15000}]
    assert dequeuer["resources"] == {"requests": {"cpu": "100m", "memory": "100Mi"}}
    assert "/mnt" not in mounts(dequeuer)
    # the user's readiness probes are the dequeuer's to run (Cortex's AsyncAPI), never the kubelet's
    assert all("readinessProbe" not in by_name[name] for name in ("model", "uploader"))


def test_user_containers_get_mnt_client_config_env_and_command() -> None:
    by_name = containers(gpu_deployment())
    model, uploader = by_name["model"], by_name["uploader"]
    for container in (model, uploader):
        assert mounts(container)["/mnt"] == "mnt"
        assert mounts(container)["/cortex/client"] == "client-config"
        variables = env(container)
        assert variables["CORTEX_PORT"] == "9000"
        assert variables["CORTEX_MNT"] == "/mnt"
        assert variables["CORTEX_CLI_CONFIG_DIR"] == "/cortex/client"
        assert variables["CORTEX_GATEWAY_URL"] == "http://gw:8888"
        assert variables["CORTEX_DEQUEUER_URL"] == "http://localhost:15000"  # the dequeuer sidecar's admin port
        assert variables["CORTEX_API_NAME"] == "transcriber"
        assert variables["CORTEX_API_KEY"] == {
            "secretKeyRef": {"name": "cortex-client", "key": "api_key", "optional": True}
        }
        assert "imagePullPolicy" not in container  # Kubernetes' default for the tag
    assert env(model)["MODEL"] == "large-v3"
    # Kubernetes expands $(CORTEX_PORT) itself, as the local runtime does
    assert model["command"] == ["python", "serve.py", "--port", "$(CORTEX_PORT)"]
    assert "args" not in model
    assert uploader["args"] == ["--watch", "/mnt/out"]
    assert "command" not in uploader  # the image's entrypoint
    volumes = {v["name"]: v for v in gpu_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["mnt"] == {"name": "mnt", "emptyDir": {}}
    assert volumes["client-config"]["secret"]["secretName"] == "cortex-client"


def test_probes_hooks_and_resources() -> None:
    by_name = containers(gpu_deployment())
    model, uploader = by_name["model"], by_name["uploader"]
    assert model["livenessProbe"] == {
        "httpGet": {"path": "/live", "port": 9000},
        "initialDelaySeconds": 30,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 5,
    }
    assert uploader["livenessProbe"]["tcpSocket"] == {"port": 9100}
    assert model["lifecycle"] == {"preStop": {"exec": {"command": ["sh", "-c", "sleep 5"]}}}
    # a container without a hook of its own is stopped once the dequeuer has drained
    assert uploader["lifecycle"] == {"preStop": {"httpGet": {"path": "/drain", "port": 15000}}}
    assert model["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert uploader["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    # shm: a memory-backed /dev/shm for the container that asked
    assert mounts(model)["/dev/shm"] == "dshm-0"
    assert "/dev/shm" not in mounts(uploader)
    volumes = {v["name"]: v for v in gpu_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm-0"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}


def test_each_container_gets_its_own_dev_shm_of_its_own_size() -> None:
    text = GPU_API.replace("compute: {cpu: 500m, mem: 1Gi}", "compute: {cpu: 500m, mem: 1Gi, shm: 64Mi}")
    (spec,) = load_text(text, "gpu.yaml")
    (deployment,) = api_objects(spec, deployment_id="d1", replicas=1, settings=SETTINGS)
    by_name = containers(deployment)
    assert mounts(by_name["model"])["/dev/shm"] == "dshm-0"
    assert mounts(by_name["uploader"])["/dev/shm"] == "dshm-1"
    volumes = {v["name"]: v["emptyDir"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v}
    assert volumes["dshm-0"]["sizeLimit"] == "2Gi" and volumes["dshm-1"]["sizeLimit"] == "64Mi"
    assert validation_error(deployment) is None


def test_user_env_vars_are_sorted_so_reordering_them_rolls_nothing() -> None:
    first = GPU_API.replace("env: {MODEL: large-v3}", "env: {MODEL: large-v3, A_FLAG: '1', Z_LAST: z}")
    second = GPU_API.replace("env: {MODEL: large-v3}", "env: {Z_LAST: z, MODEL: large-v3, A_FLAG: '1'}")
    rendered = []
    for text in (first, second):
        (spec,) = load_text(text, "gpu.yaml")
        (deployment,) = api_objects(spec, deployment_id="d1", replicas=1, settings=SETTINGS)
        rendered.append(containers(deployment)["model"]["env"])
    assert rendered[0] == rendered[1]
    assert [e["name"] for e in rendered[0][:3]] == ["A_FLAG", "MODEL", "Z_LAST"]


def test_api_pods_mount_no_service_account_token() -> None:
    assert gpu_deployment()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_gpus_bring_tolerations_and_node_groups_affinity() -> None:
    pod = gpu_deployment()["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    affinity = pod["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": ["gpu-a10", "gpu-t4"]}
    ]
    preferred = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [p["preference"]["matchExpressions"][0]["values"] for p in preferred] == [["gpu-a10"], ["gpu-t4"]]
    assert preferred[0]["weight"] > preferred[1]["weight"]  # the first group listed is preferred


def test_a_cpu_only_api_has_no_tolerations_affinity_or_shm() -> None:
    (spec,) = load_file(Path(__file__).parents[2] / "examples/hello-world/cortex.yaml")
    (deployment,) = api_objects(spec, deployment_id="x", replicas=1, settings=SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert "affinity" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["mnt", "client-config"]


def test_private_images_are_pulled_with_the_named_secrets() -> None:
    (spec,) = load_text(GPU_API, "gpu.yaml")
    settings = KubeSettings(namespace="ml", image_pull_secrets=("regcred", "gpu-registry"))
    (deployment,) = api_objects(spec, deployment_id="d1", replicas=1, settings=settings)
    assert validation_error(deployment) is None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "gpu-registry"}]
    assert "imagePullSecrets" not in gpu_deployment()["spec"]["template"]["spec"]


def test_a_container_without_image_is_refused_with_the_field() -> None:
    spec = ApiSpec.from_dict(
        {"name": "local-only", "kind": "AsyncAPI", "pod": {"containers": [{"name": "api", "command": ["python"]}]}}
    )
    with pytest.raises(CortexError, match=r"local-only: pod.containers\[0\] \(api\): no image"):
        api_objects(spec, deployment_id="x", replicas=1, settings=SETTINGS)


@pytest.mark.parametrize(
    ("seconds", "text"), [(10, "10s"), (60, "1m0s"), (90, "1m30s"), (300, "5m0s"), (3600, "1h0m0s"), (0.5, "0.5s")]
)
def test_durations_are_written_as_go_writes_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


# -- cortex render -------------------------------------------------------------------------------


def test_render_prints_the_objects_as_yaml(tmp_path: Path) -> None:
    config = tmp_path / "cortex.yaml"
    config.write_text(GPU_API)
    result = CliRunner().invoke(cli, ["render", str(config), "-n", "ml", "--image", "img:1"])
    assert result.exit_code == 0, result.output
    (deployment,) = list(yaml.safe_load_all(result.output))
    assert "imagePullSecrets" not in deployment["spec"]["template"]["spec"]
    pulled = CliRunner().invoke(cli, ["render", str(config), "--image-pull-secret", "regcred"])
    (with_secret,) = list(yaml.safe_load_all(pulled.output))
    assert with_secret["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert validation_error(deployment) is None
    assert deployment["metadata"]["namespace"] == "ml"
    assert containers(deployment)["dequeuer"]["image"] == "img:1"
    assert env(containers(deployment)["model"])["CORTEX_GATEWAY_URL"] == "http://gateway.ml.svc.cluster.local:8888"
    assert "&id" not in result.output  # no YAML anchors: every document stands alone
    # the same configuration renders the same text: fit for keeping in Git
    again = CliRunner().invoke(cli, ["render", str(config), "-n", "ml", "--image", "img:1"])
    assert again.output == result.output


def test_render_json_is_a_list(tmp_path: Path) -> None:
    config = Path(__file__).parents[2] / "examples/chaining/cortex.yaml"
    result = CliRunner().invoke(cli, ["render", str(config), "-o", "json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert listing["kind"] == "List"
    assert [item["metadata"]["name"] for item in listing["items"]] == ["api-shout", "api-pipeline"]


def test_render_says_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "cortex.yaml"
    config.write_text("- name: x\n  kind: AsyncAPI\n  pod:\n    containers:\n      - name: api\n        command: [a]\n")
    result = CliRunner().invoke(cli, ["render", str(config)])
    assert result.exit_code == 1
    assert "error: api x: pod.containers[0] (api): no image" in result.output
    assert "Traceback" not in result.output


SCHEDULED = (
    GPU_API
    + """\
  kubernetes:
    runtime_class_name: nvidia
    priority_class_name: inference-high
    node_selector: {cloud.google.com/gke-accelerator: nvidia-a100-80gb, kubernetes.azure.com/agentpool: gpu}
    tolerations:
      - {key: sku, operator: Equal, value: gpu, effect: NoSchedule}
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, toleration_seconds: 60}
    gpu_resource: nvidia.com/mig-1g.10gb
"""
)


def scheduled_deployment() -> dict[str, Any]:
    (spec,) = load_text(SCHEDULED, "gpu.yaml")
    (deployment,) = api_objects(spec, deployment_id="d1", replicas=1, settings=SETTINGS)
    return deployment


def test_the_kubernetes_section_sets_the_pods_scheduling() -> None:
    deployment = scheduled_deployment()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "inference-high"
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-a100-80gb",
        "kubernetes.azure.com/agentpool": "gpu",
    }
    # the GPU toleration implied by compute.gpu comes first, and is not repeated when the API lists it too
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert validation_error(deployment) is None


def test_gpu_resource_names_the_resource_gpus_are_requested_as() -> None:
    model = containers(scheduled_deployment())["model"]
    assert model["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/mig-1g.10gb": "1"},
        "limits": {"nvidia.com/mig-1g.10gb": "1"},
    }


def test_an_api_without_a_kubernetes_section_keeps_its_spec_id() -> None:
    (plain,) = load_text(GPU_API, "gpu.yaml")
    (empty,) = load_text(GPU_API + "  kubernetes: {}\n", "gpu.yaml")
    (scheduled,) = load_text(SCHEDULED, "gpu.yaml")
    assert "kubernetes" not in plain.to_dict()
    assert plain.spec_id() == empty.spec_id() != scheduled.spec_id()
    assert ApiSpec.from_dict(scheduled.to_dict()) == scheduled


def test_node_groups_select_the_node_group_label_of_the_settings() -> None:
    (spec,) = load_text(GPU_API, "gpu.yaml")
    settings = KubeSettings(namespace="ml", node_group_label="example.com/pool")
    (deployment,) = api_objects(spec, deployment_id="d1", replicas=1, settings=settings)
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "example.com/pool", "operator": "In", "values": ["gpu-a10", "gpu-t4"]}]


@pytest.mark.parametrize("command", ["render", "deploy"])
def test_max_unavailable_over_100_percent_is_refused_before_any_cluster_sees_it(tmp_path: Path, command: str) -> None:
    config = tmp_path / "cortex.yaml"
    config.write_text(GPU_API.replace("max_unavailable: 0", "max_unavailable: 101%"))
    result = CliRunner().invoke(cli, [command, str(config)], env={"CORTEX_CLI_CONFIG_DIR": str(tmp_path / "cli")})
    assert result.exit_code == 1
    expected = f'{config}: api "transcriber" (#1): update_strategy.max_unavailable: must not be greater than 100%'
    assert expected in result.output
    assert "Traceback" not in result.output


def test_render_honours_node_group_label(tmp_path: Path) -> None:
    config = tmp_path / "cortex.yaml"
    config.write_text(GPU_API)
    result = CliRunner().invoke(cli, ["render", str(config), "--node-group-label", "example.com/pool"])
    assert result.exit_code == 0, result.output
    (deployment,) = list(yaml.safe_load_all(result.output))
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["key"] == "example.com/pool"


async def test_only_kubernetes_applies_the_kubernetes_section_and_others_say_so(tmp_path: Path) -> None:
    from cortex.backends import BackendUrls
    from cortex.runtime.local import ClusterEnv, LocalRuntime

    (plain,) = load_text(GPU_API, "gpu.yaml")
    (scheduled,) = load_text(SCHEDULED, "gpu.yaml")
    urls = BackendUrls(queue="sqlite:///q", store="sqlite:///s", blobs=str(tmp_path))
    local = LocalRuntime(tmp_path, urls, ClusterEnv(gateway_url="http://gw", cli_config_dir=tmp_path, version="1"))
    assert local.notes(plain) == []
    (note,) = local.notes(scheduled)
    assert "kubernetes section" in note and "ignored here" in note
