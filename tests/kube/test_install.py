"""The platform's install objects: valid for Kubernetes, wired to each other, and free of secrets unless asked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cortex.auth import key_digest
from cortex.cli.main import cli
from cortex.env import EnvConfig
from cortex.errors import CortexError
from cortex.runtime.kubeinstall import (
    InstallSettings,
    client_config,
    install_manifest,
    install_objects,
    kube_settings,
)
from tests.kube.schemas import validation_error

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "cortex-async.yaml"
TOKEN = "operator-token-0123456789abcdef"
CHAIN_KEY = "chain-key-0123456789abcdefghij"
REPLICA_TOKEN = "replica-token-0123456789abcdef"
USER_KEY = "user-key-0123456789abcdefghijkl"
#: one server for both (two are refused)
QUEUE_URL = STORE_URL = "postgresql://cortex:store-password@postgres.cortex.svc:5432/cortex"
BLOBS_URL = "s3://bucket/prefix?secret_access_key=blobs-secret"


def settings(**changes: Any) -> InstallSettings:
    """Settings with real-looking backends, ``changes`` applied."""
    return InstallSettings(queue_url=QUEUE_URL, store_url=STORE_URL, blobs_url=BLOBS_URL, **changes)


def full() -> InstallSettings:
    """Every secret set: token, keys, chaining key."""
    return settings(
        operator_token=TOKEN,
        api_key_digests=frozenset({key_digest(USER_KEY)}),
        chain_key=CHAIN_KEY,
        replica_token=REPLICA_TOKEN,
    )


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` called ``name``."""
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    """The one container of ``deployment``."""
    (only,) = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


CASES = {
    "plain": (settings(), True),
    "no-secrets": (settings(), False),
    "load-balancer": (settings(service_type="LoadBalancer"), True),
    "token-and-keys": (full(), True),
    "token-and-keys-no-secrets": (full(), False),
    "elsewhere": (settings(namespace="async-apis", image="registry.local/cortex:dev", operator_port=9000), True),
    "private-registry": (settings(image_pull_secrets=("regcred",)), True),
}


@pytest.mark.parametrize(("install", "secrets"), CASES.values(), ids=CASES.keys())
def test_every_object_is_valid_for_kubernetes(install: InstallSettings, secrets: bool) -> None:
    for obj in install_objects(install, secrets=secrets):
        assert validation_error(obj) is None, f"{obj['kind']} {obj['metadata']['name']}"


def test_objects_come_in_apply_order() -> None:
    kinds = [(o["kind"], o["metadata"]["name"]) for o in install_objects(full())]
    assert kinds == [
        ("Namespace", "cortex"),
        ("Secret", "cortex-backends"),
        ("Secret", "cortex-client"),
        ("Secret", "cortex-gateway"),
        ("Secret", "cortex-operator"),
        ("ServiceAccount", "operator"),
        ("Role", "operator"),
        ("RoleBinding", "operator"),
        ("Deployment", "operator"),
        ("Service", "operator"),
        ("Deployment", "gateway"),
        ("Service", "gateway"),
        ("HorizontalPodAutoscaler", "gateway"),
    ]
    without = [o["kind"] for o in install_objects(full(), secrets=False)]
    assert "Secret" not in without
    assert len(without) == len(kinds) - 4


def test_everything_is_in_the_namespace_and_labelled() -> None:
    install = settings(namespace="async-apis")
    for obj in install_objects(install):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == labels["app.kubernetes.io/part-of"] == "cortex-async"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "async-apis"
        if obj["kind"] in ("Deployment", "Service", "HorizontalPodAutoscaler"):
            assert labels["app.kubernetes.io/component"] == obj["metadata"]["name"]


def test_the_operator_knows_where_everything_is() -> None:
    install = settings(namespace="apis", image="registry.local/cortex:dev", operator_port=9000, gateway_port=9001)
    operator = container(install_objects(install), "operator")
    assert operator["image"] == "registry.local/cortex:dev"
    assert operator["command"] == ["cortex", "operator"]
    assert operator["args"] == [
        "--provider",
        "kubernetes",
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--namespace",
        "apis",
        "--image",
        "registry.local/cortex:dev",
        "--gateway-url",
        "http://gateway.apis.svc.cluster.local:9001",
        "--operator-url",
        "http://operator.apis.svc.cluster.local:9000",
        "--grace-period",
        "60",
        "--lease-seconds",
        "30",
        "--autoscaler-tick",
        "10",
        "--node-group-label",
        "eks.amazonaws.com/nodegroup",
        "--allow-private-webhooks",
    ]
    assert operator["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]


def test_the_operator_runs_alone_as_its_service_account() -> None:
    deployment = find(install_objects(settings()), "Deployment", "operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "operator"
    assert container([deployment], "operator")["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}


def test_the_gateway_rolls_without_losing_capacity() -> None:
    objects = install_objects(settings(gateway_port=9001))
    gateway = container(objects, "gateway")
    assert gateway["command"] == ["cortex", "gateway"]
    assert gateway["args"] == [
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--operator-url",
        "http://operator.cortex.svc.cluster.local:8889",
        "--allow-private-webhooks",
    ]
    spec = find(objects, "Deployment", "gateway")["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] > 0
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    # a removed gateway keeps answering until its Service stops sending it requests
    # an exec of the image's sleep: the `sleep` action would need Kubernetes 1.30, older than the docs support
    assert gateway["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    # its autoscaler owns the count: a re-apply must not reset it
    assert "replicas" not in spec


def test_private_images_are_pulled_with_the_named_secrets() -> None:
    install = settings(image_pull_secrets=("regcred", "mirror.registry"))
    objects = install_objects(install)
    for name in ("operator", "gateway"):
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror.registry"}]
    # and the APIs' pods, through the operator
    args = container(objects, "operator")["args"]
    pulls = [args[i + 1] for i, arg in enumerate(args) if arg == "--image-pull-secret"]
    assert pulls == ["regcred", "mirror.registry"]
    backends = ["--queue", QUEUE_URL, "--store", STORE_URL, "--blobs", BLOBS_URL]
    params = cli.commands["operator"].make_context("operator", [*args, *backends]).params
    assert params["image_pull_secrets"] == ("regcred", "mirror.registry")
    assert kube_settings(install).image_pull_secrets == ("regcred", "mirror.registry")
    assert (
        "imagePullSecrets" not in find(install_objects(settings()), "Deployment", "gateway")["spec"]["template"]["spec"]
    )


def test_secrets_reach_the_right_containers() -> None:
    objects = install_objects(settings(), secrets=False)
    assert container(objects, "operator")["envFrom"] == [
        {"secretRef": {"name": "cortex-backends"}},
        {"secretRef": {"name": "cortex-operator", "optional": True}},
    ]
    assert container(objects, "gateway")["envFrom"] == [
        {"secretRef": {"name": "cortex-backends"}},
        {"secretRef": {"name": "cortex-gateway", "optional": True}},
    ]
    # the APIs' pods read the Secrets this installation creates
    apis = kube_settings(settings())
    names = {o["metadata"]["name"] for o in install_objects(settings()) if o["kind"] == "Secret"}
    assert {apis.backends_secret, apis.client_secret} <= names


@pytest.mark.parametrize("deployment", ["operator", "gateway"])
def test_probes_ask_the_health_routes_on_the_served_port(deployment: str) -> None:
    objects = install_objects(settings())
    served = container(objects, deployment)
    assert [p["name"] for p in served["ports"]] == ["http"]
    # the gateway is ready only while it reaches its backend; alive is alive, for both
    ready = "/readyz" if deployment == "gateway" else "/healthz"
    assert served["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
    assert served["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    pod_labels = find(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    service = find(objects, "Service", deployment)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_role_is_bound_to_the_operator_and_names_every_verb() -> None:
    objects = install_objects(settings())
    rules = find(objects, "Role", "operator")["rules"]
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in rules)
    binding = find(objects, "RoleBinding", "operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "operator", "namespace": "cortex"}]


def test_the_gateway_autoscales_on_cpu() -> None:
    objects = install_objects(settings(gateway_replicas=3, gateway_max_replicas=7))
    hpa = find(objects, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    # utilization is a share of the request: without one the autoscaler does nothing
    assert container(objects, "gateway")["resources"]["requests"]["cpu"] == "500m"


@pytest.mark.parametrize("service_type", ["ClusterIP", "LoadBalancer"])
def test_services_have_the_type_asked(service_type: str) -> None:
    objects = install_objects(settings(service_type=service_type, operator_port=9000, gateway_port=9001))
    assert find(objects, "Service", "operator")["spec"]["type"] == service_type
    assert find(objects, "Service", "gateway")["spec"]["type"] == service_type
    assert find(objects, "Service", "operator")["spec"]["ports"][0]["port"] == 9000
    assert find(objects, "Service", "gateway")["spec"]["ports"][0]["port"] == 9001


def test_no_secret_value_without_secrets() -> None:
    text = install_manifest(full(), secrets=False)
    for secret in (TOKEN, CHAIN_KEY, key_digest(CHAIN_KEY), key_digest(USER_KEY), QUEUE_URL, STORE_URL, BLOBS_URL):
        assert secret not in text
    for word in ("queue-password", "store-password", "blobs-secret", "stringData"):
        assert word not in text


def test_the_secrets_hold_urls_token_and_keys() -> None:
    second = key_digest("another-key-0123456789abcdef")
    install = settings(
        operator_token=TOKEN,
        chain_key=CHAIN_KEY,
        replica_token=REPLICA_TOKEN,
        api_key_digests=frozenset({key_digest(USER_KEY), second}),
    )
    objects = install_objects(install)
    assert find(objects, "Secret", "cortex-backends")["stringData"] == {
        "CORTEX_QUEUE_URL": QUEUE_URL,
        "CORTEX_STORE_URL": STORE_URL,
        "CORTEX_BLOBS_URL": BLOBS_URL,
    }
    gateway = find(objects, "Secret", "cortex-gateway")["stringData"]
    assert sorted(gateway["CORTEX_API_KEYS"].split()) == sorted([key_digest(USER_KEY), second])
    assert gateway["CORTEX_GATEWAY_INTERNAL_KEYS"] == key_digest(CHAIN_KEY)
    assert find(objects, "Secret", "cortex-operator")["stringData"] == {
        "CORTEX_OPERATOR_TOKEN": TOKEN,
        "CORTEX_OPERATOR_READ_TOKEN": REPLICA_TOKEN,
    }
    client = find(objects, "Secret", "cortex-client")["stringData"]
    assert client == {"cli.yaml": client_config(install), "api_key": CHAIN_KEY}
    assert TOKEN not in client["cli.yaml"] and REPLICA_TOKEN in client["cli.yaml"]


def test_without_token_or_keys_the_optional_secrets_are_empty() -> None:
    objects = install_objects(settings())
    assert find(objects, "Secret", "cortex-gateway")["stringData"] == {}
    assert find(objects, "Secret", "cortex-operator")["stringData"] == {}
    assert set(find(objects, "Secret", "cortex-client")["stringData"]) == {"cli.yaml"}


@pytest.mark.parametrize(
    ("install", "token", "key"),
    [(settings(), None, None), (full(), REPLICA_TOKEN, CHAIN_KEY)],
    ids=["plain", "token-and-key"],
)
def test_the_client_config_loads_as_the_cli_reads_it(
    install: InstallSettings, token: str | None, key: str | None, tmp_path: Path
) -> None:
    (tmp_path / "cli.yaml").write_text(client_config(install), encoding="utf-8")
    env = EnvConfig.load(tmp_path).get()
    assert env.name == "default"
    assert env.operator_endpoint == "http://operator.cortex.svc.cluster.local:8889"
    assert (env.operator_token, env.api_key) == (token, key)
    # the API pods never hold the operator token: only the one that may read
    assert TOKEN not in client_config(install)


def test_the_apis_reach_this_installation() -> None:
    apis = kube_settings(settings(namespace="apis", image="registry.local/cortex:dev", gateway_port=9001))
    assert (apis.namespace, apis.image) == ("apis", "registry.local/cortex:dev")
    assert apis.gateway_url == "http://gateway.apis.svc.cluster.local:9001"


def pod_environment(objects: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    """The variables ``deployment``'s container gets from the Secrets its ``envFrom`` names."""
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret"}
    env: dict[str, str] = {}
    for source in container(objects, deployment)["envFrom"]:
        env |= secrets[source["secretRef"]["name"]]
    return env


def test_the_gateway_command_takes_its_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = install_objects(full())
    for name, value in pod_environment(objects, "gateway").items():
        monkeypatch.setenv(name, value)
    command = cli.commands["gateway"]
    params = command.make_context("gateway", list(container(objects, "gateway")["args"])).params
    assert (params["host"], params["port"]) == ("0.0.0.0", 8888)
    assert params["operator_url"] == "http://operator.cortex.svc.cluster.local:8889"
    assert (params["queue_url"], params["store_url"], params["blobs_url"]) == (QUEUE_URL, STORE_URL, BLOBS_URL)
    assert params["api_keys"] == (key_digest(USER_KEY),)
    # CORTEX_GATEWAY_INTERNAL_KEYS is no option: the gateway's server reads it from its environment


def test_the_operator_command_takes_its_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    install = full()
    objects = install_objects(install)
    for name, value in pod_environment(objects, "operator").items():
        monkeypatch.setenv(name, value)
    command = cli.commands["operator"]
    params = command.make_context("operator", list(container(objects, "operator")["args"])).params
    assert (params["provider"], params["host"], params["port"]) == ("kubernetes", "0.0.0.0", 8889)
    assert (params["namespace"], params["image"]) == ("cortex", install.image)
    assert (params["gateway_url"], params["operator_url"]) == (install.gateway_url, install.operator_url)
    assert (params["queue_url"], params["store_url"], params["blobs_url"]) == (QUEUE_URL, STORE_URL, BLOBS_URL)
    assert params["operator_token"] == TOKEN
    assert params["read_token"] == REPLICA_TOKEN


@pytest.mark.parametrize(
    "changes",
    [
        {"namespace": "Not_A_Label"},
        {"service_type": "Ingress"},
        {"gateway_replicas": 0},
        {"gateway_replicas": 5, "gateway_max_replicas": 4},
        {"operator_port": 0},
        {"api_key_digests": frozenset({USER_KEY})},
        {"api_key_digests": frozenset({"sha256:1234"})},
        {"operator_token": "short"},
        {"chain_key": key_digest(CHAIN_KEY)},
        {"chain_key": "has blanks 0123456789abcdef"},
        {"image_pull_secrets": ("Reg_Cred",)},
    ],
)
def test_bad_settings_are_refused_without_repeating_secrets(changes: dict[str, Any]) -> None:
    with pytest.raises(CortexError) as caught:
        settings(**changes)
    for value in changes.values():
        if isinstance(value, str) and value not in ("Not_A_Label", "Ingress"):
            assert value not in str(caught.value)


def test_the_manifest_is_plain_yaml_of_the_objects() -> None:
    text = install_manifest(full(), secrets=True)
    assert list(yaml.safe_load_all(text)) == install_objects(full(), secrets=True)
    # no anchors or aliases: every repeated label set is written out
    assert "&id" not in text
    assert "*id" not in text
    assert text.startswith("# ")


@pytest.fixture(scope="session")
def update_manifests() -> bool:
    # session-scoped so it reads the variable before the autouse fixture clears CORTEX_* for each test
    return os.environ.get("CORTEX_UPDATE_MANIFESTS") == "1"


def test_the_checked_in_manifest_is_the_generated_one(update_manifests: bool) -> None:
    generated = install_manifest(InstallSettings(queue_url="", store_url="", blobs_url=""), secrets=False)
    if update_manifests:
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(generated, encoding="utf-8")
    checked_in = MANIFEST.read_text(encoding="utf-8") if MANIFEST.exists() else ""
    assert checked_in == generated, (
        f"{MANIFEST} is not what install_manifest renders; regenerate it with"
        " CORTEX_UPDATE_MANIFESTS=1 pytest tests/kube/test_install.py"
    )
