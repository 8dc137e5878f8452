"""The Kubernetes objects the platform itself is: the operator, the gateway, and their access rights.

A pure function of :class:`InstallSettings`, applied once per cluster (each API's own objects are
:mod:`cortex.runtime.kubeobjects`'). In apply order:

- the Namespace;
- with ``secrets=True`` only, the four Secrets (``cortex-backends``: the backends' URLs;
  ``cortex-client``: the replicas' ``cli.yaml`` and chaining key; ``cortex-gateway``: the keys'
  digests; ``cortex-operator``: the operator's token). The checked-in manifest has none: users
  create them (:func:`manifest_header` says how), so no secret ever sits in a repository;
- the operator's ServiceAccount, Role and RoleBinding (the verbs its code calls on Deployments,
  their scale, pods and their logs, in its own namespace only: :data:`OPERATOR_GRANTS`);
- the operator: one replica (one autoscaler at a time) and its Service;
- the gateway: a Deployment, its Service and a HorizontalPodAutoscaler on CPU.

One image runs all of it, the command choosing the role: ``cortex operator``, ``cortex gateway``,
``python -m cortex.dequeuer``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml

from cortex.auth import DIGEST_PREFIX, key_digest, normalize_key
from cortex.backends import BackendUrls, check_one_server
from cortex.errors import CortexError
from cortex.runtime.kubeobjects import KubeSettings
from cortex.spec.kubernetes import check_qualified_name

#: the value of ``app.kubernetes.io/name`` and ``app.kubernetes.io/part-of`` on every object
APP = "cortex-async"
#: the Secrets the objects read (the first two are :class:`KubeSettings`' defaults)
BACKENDS_SECRET, CLIENT_SECRET = KubeSettings().backends_secret, KubeSettings().client_secret
GATEWAY_SECRET, OPERATOR_SECRET = "cortex-gateway", "cortex-operator"
#: the names of the operator's and the gateway's objects (and so of their Services' hosts)
OPERATOR, GATEWAY = "operator", "gateway"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
#: seconds a removed gateway pod keeps serving before its SIGTERM (a ``preStop`` exec of ``sleep``)
GATEWAY_DRAIN_SECONDS = 5
#: the gateway's HorizontalPodAutoscaler target: average CPU use over requests, in percent
GATEWAY_CPU_TARGET = 70

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True, slots=True)
class InstallSettings:
    """What one installation of the platform is made of.

    Attributes:
        queue_url: The queue backend (``postgresql://...``, ``redis://redis.cortex.svc:6379/0``).
        store_url: The record store backend: the queue's server (its URL), or the installation is refused.
        blobs_url: The blob store (``s3://bucket/prefix``).
        namespace: Where the platform and every API run.
        image: The platform image (operator, gateway and dequeuer).
        operator_token: The clear token the operator requires (None: none).
        api_key_digests: ``sha256:<hex>`` digests of the keys every API accepts (and then requires).
        chain_key: The clear key replicas call the gateway with (chaining); the gateway accepts it
            for every API without making a key necessary.
        replica_token: With an ``operator_token``, the token the API pods' ``cli.yaml`` holds instead:
            the operator lets it read (``GET``) but not deploy or delete, so a user container never
            holds the operator token.
        gateway_replicas: The gateway's fewest replicas (its autoscaler's minimum).
        gateway_max_replicas: The gateway's most replicas.
        service_type: ``ClusterIP``, ``NodePort`` or ``LoadBalancer``, for both Services. A
            ``LoadBalancer`` operator should have a token.
        operator_port: The operator's port (its container's and its Service's).
        gateway_port: The gateway's port.
        image_pull_secrets: Secrets the platform's pods and the APIs' pods pull private images with.
        grace_period: Seconds an API's pod has to drain when removed (the operator's ``--grace-period``).
        lease_seconds: The dequeuers' lease on a request (the operator's ``--lease-seconds``).
        autoscaler_tick: Seconds between two autoscaler ticks (the operator's ``--autoscaler-tick``).
        refuse_private_webhooks: Refuse webhooks to private, loopback and link-local addresses (both the
            gateway, which checks them at submission, and the operator, which delivers them).
        node_group_label: The node label ``node_groups`` match (EKS's by default).

    Raises:
        CortexError: a setting is not valid (the message never repeats a token or key).
    """

    queue_url: str
    store_url: str
    blobs_url: str
    namespace: str = "cortex"
    image: str = KubeSettings().image
    operator_token: str | None = dataclasses.field(default=None, repr=False)
    api_key_digests: frozenset[str] = frozenset()
    chain_key: str | None = dataclasses.field(default=None, repr=False)
    replica_token: str | None = dataclasses.field(default=None, repr=False)
    gateway_replicas: int = 2
    gateway_max_replicas: int = 10
    service_type: str = "ClusterIP"
    operator_port: int = 8889
    gateway_port: int = 8888
    image_pull_secrets: tuple[str, ...] = ()
    grace_period: int = KubeSettings().grace_period
    lease_seconds: float = KubeSettings().lease_seconds
    autoscaler_tick: float = 10.0
    refuse_private_webhooks: bool = False
    node_group_label: str = KubeSettings().node_group_label

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.namespace):
            raise CortexError(f"namespace {self.namespace!r}: must be a DNS label (lower case letters, digits, '-')")
        if self.service_type not in SERVICE_TYPES:
            raise CortexError(f"service_type {self.service_type!r}: must be one of {', '.join(SERVICE_TYPES)}")
        if not 1 <= self.gateway_replicas <= self.gateway_max_replicas:
            raise CortexError(
                f"gateway replicas: need 1 <= gateway_replicas ({self.gateway_replicas})"
                f" <= gateway_max_replicas ({self.gateway_max_replicas})"
            )
        for name, port in (("operator_port", self.operator_port), ("gateway_port", self.gateway_port)):
            if not 1 <= port <= 65535:
                raise CortexError(f"{name} {port}: must be a port number (1-65535)")
        if self.grace_period < 1:
            raise CortexError(f"grace_period {self.grace_period}: must be at least 1 second")
        for name, seconds in (("lease_seconds", self.lease_seconds), ("autoscaler_tick", self.autoscaler_tick)):
            if not seconds > 0:
                raise CortexError(f"{name} {seconds:g}: must be more than 0 seconds")
        try:
            check_qualified_name(self.node_group_label)
        except ValueError as exc:
            raise CortexError(f"node_group_label: {exc}") from None
        self._check_secrets()
        check_one_server(BackendUrls(queue=self.queue_url, store=self.store_url, blobs=self.blobs_url))

    def _check_secrets(self) -> None:
        for secret in self.image_pull_secrets:
            if not _DNS_SUBDOMAIN.match(secret):
                raise CortexError(f"image pull secret {secret!r}: must be a Secret's name (lower case, digits, -, .)")
        for digest in self.api_key_digests:
            if not digest.startswith(DIGEST_PREFIX) or _checked(digest, "api_key_digests") != digest:
                raise CortexError(f"api_key_digests: each must be {DIGEST_PREFIX} and 64 lower-case hex digits")
        if self.replica_token is not None and self.replica_token == self.operator_token:
            raise CortexError("replica_token: must differ from operator_token (it may only read)")
        tokens = (("operator_token", self.operator_token), ("chain_key", self.chain_key))
        for name, value in (*tokens, ("replica_token", self.replica_token)):
            if value is None:
                continue
            if value.startswith(DIGEST_PREFIX):
                raise CortexError(f"{name}: must be the key in clear, not its digest")
            _checked(value, name)

    @property
    def gateway_url(self) -> str:
        """Where the gateway answers inside the cluster."""
        return f"http://{GATEWAY}.{self.namespace}.svc.cluster.local:{self.gateway_port}"

    @property
    def operator_url(self) -> str:
        """Where the operator answers inside the cluster."""
        return f"http://{OPERATOR}.{self.namespace}.svc.cluster.local:{self.operator_port}"


def _checked(value: str, name: str) -> str:
    """``value``'s digest (:func:`cortex.auth.normalize_key`); a bad one is a :class:`CortexError`."""
    try:
        return normalize_key(value)
    except ValueError as exc:
        raise CortexError(f"{name}: {exc}") from None


def kube_settings(settings: InstallSettings) -> KubeSettings:
    """The settings the APIs' objects are rendered with in this installation."""
    return KubeSettings(
        namespace=settings.namespace,
        image=settings.image,
        gateway_url=settings.gateway_url,
        image_pull_secrets=settings.image_pull_secrets,
        grace_period=settings.grace_period,
        lease_seconds=settings.lease_seconds,
        node_group_label=settings.node_group_label,
    )


def client_config(settings: InstallSettings) -> str:
    """The ``cli.yaml`` every API container finds in ``/cortex/client`` (:mod:`cortex.env`'s format).

    One environment, ``default``: the operator's in-cluster URL, the replicas' read-only token (never
    the operator token) and the chaining key when set.
    """
    environment = {"name": "default", "operator_endpoint": settings.operator_url}
    if settings.operator_token is not None and settings.replica_token is not None:
        environment["operator_token"] = settings.replica_token
    if settings.chain_key is not None:
        environment["api_key"] = settings.chain_key
    return yaml.safe_dump({"default_environment": "default", "environments": [environment]}, sort_keys=False)


def install_objects(settings: InstallSettings, *, secrets: bool = True) -> list[dict[str, Any]]:
    """The platform's objects, in the order they are applied; the Secrets only with ``secrets``."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": settings.namespace, "labels": _labels()}}
    ]
    if secrets:
        objects += secret_objects(settings)
    objects += rbac_objects(settings)
    objects += [operator_deployment(settings), service(settings, OPERATOR, settings.operator_port)]
    objects += [gateway_deployment(settings), service(settings, GATEWAY, settings.gateway_port)]
    objects.append(gateway_autoscaler(settings))
    return objects


def secret_objects(settings: InstallSettings) -> list[dict[str, Any]]:
    """The four Secrets, from ``settings``' URLs, token and keys (every one in ``stringData``)."""
    backends = {
        "CORTEX_QUEUE_URL": settings.queue_url,
        "CORTEX_STORE_URL": settings.store_url,
        "CORTEX_BLOBS_URL": settings.blobs_url,
    }
    client = {"cli.yaml": client_config(settings)}
    gateway: dict[str, str] = {}
    operator: dict[str, str] = {}
    if settings.api_key_digests:
        gateway["CORTEX_API_KEYS"] = " ".join(sorted(settings.api_key_digests))
    if settings.chain_key is not None:
        client["api_key"] = settings.chain_key
        gateway["CORTEX_GATEWAY_INTERNAL_KEYS"] = key_digest(settings.chain_key)
    if settings.operator_token is not None:
        operator["CORTEX_OPERATOR_TOKEN"] = settings.operator_token
        if settings.replica_token is not None:
            operator["CORTEX_OPERATOR_READ_TOKEN"] = settings.replica_token
    return [
        _secret(settings, BACKENDS_SECRET, None, backends),
        _secret(settings, CLIENT_SECRET, None, client),
        _secret(settings, GATEWAY_SECRET, GATEWAY, gateway),
        _secret(settings, OPERATOR_SECRET, OPERATOR, operator),
    ]


#: every call the in-cluster operator makes (its Kubernetes runtime), as (API group, resource, verbs):
#: the Role grants these and nothing else (tests/kube/test_rbac.py records the calls and compares)
OPERATOR_GRANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # list and watch: the runtime's informer; create: a server-side apply of a new API; patch: of a changed
    # one; delete: `cortex delete`
    ("apps", "deployments", ("list", "watch", "create", "patch", "delete")),
    # the autoscaler's replica count
    ("apps", "deployments/scale", ("patch",)),
    # list and watch: replicas' states; patch: controller.kubernetes.io/pod-deletion-cost (idle go first)
    ("", "pods", ("list", "watch", "patch")),
    ("", "pods/log", ("get",)),
)


def rbac_objects(settings: InstallSettings) -> list[dict[str, Any]]:
    """The operator's ServiceAccount, its Role in the namespace (:data:`OPERATOR_GRANTS`), and their RoleBinding."""
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        for group, resource, verbs in OPERATOR_GRANTS
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(settings, OPERATOR, OPERATOR)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(settings, OPERATOR, OPERATOR),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(settings, OPERATOR, OPERATOR),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": settings.namespace}],
        },
    ]


def operator_deployment(settings: InstallSettings) -> dict[str, Any]:
    """The operator: one replica, replaced rather than rolled (two would both autoscale)."""
    args = ["--provider", "kubernetes", "--host", "0.0.0.0", "--port", str(settings.operator_port)]
    args += ["--namespace", settings.namespace, "--image", settings.image]
    args += ["--gateway-url", settings.gateway_url, "--operator-url", settings.operator_url]
    args += [option for name in settings.image_pull_secrets for option in ("--image-pull-secret", name)]
    args += ["--grace-period", str(settings.grace_period), "--lease-seconds", f"{settings.lease_seconds:g}"]
    args += ["--autoscaler-tick", f"{settings.autoscaler_tick:g}", "--node-group-label", settings.node_group_label]
    args.append(_webhooks_flag(settings))
    container = _container(settings, OPERATOR, args, settings.operator_port, OPERATOR_SECRET, cpu="200m")
    pod = {"serviceAccountName": OPERATOR, "containers": [container]}
    return _deployment(settings, OPERATOR, pod, replicas=1, strategy={"type": "Recreate"})


def gateway_deployment(settings: InstallSettings) -> dict[str, Any]:
    """The gateway: stateless replicas behind a Service, rolled with none missing.

    It has no ``replicas``: its HorizontalPodAutoscaler owns the count, and a re-apply must not reset it.
    """
    args = ["--host", "0.0.0.0", "--port", str(settings.gateway_port), "--operator-url", settings.operator_url]
    args.append(_webhooks_flag(settings))
    # the autoscaler's target is a share of the cpu request, so there must be one
    container = _container(settings, GATEWAY, args, settings.gateway_port, GATEWAY_SECRET, cpu="500m")
    # a removed gateway keeps answering while its Service stops routing to it (endpoints lag behind). An exec of
    # the image's own sleep, not the `sleep` action, which needs Kubernetes 1.30 (docs/kubernetes.md: 1.23+)
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(GATEWAY_DRAIN_SECONDS)]}}}
    # the gateway never calls the Kubernetes API
    pod = {"automountServiceAccountToken": False, "terminationGracePeriodSeconds": 30, "containers": [container]}
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return _deployment(settings, GATEWAY, pod, replicas=None, strategy=strategy)


def _webhooks_flag(settings: InstallSettings) -> str:
    # always written out, so the manifest says which it is
    return "--refuse-private-webhooks" if settings.refuse_private_webhooks else "--allow-private-webhooks"


def service(settings: InstallSettings, component: str, port: int) -> dict[str, Any]:
    """The Service ``component`` (``operator`` or ``gateway``) answers on, ``port`` to its pods' ``http``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(settings, component, component),
        "spec": {
            "type": settings.service_type,
            "selector": _selector(component),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def gateway_autoscaler(settings: InstallSettings) -> dict[str, Any]:
    """The gateway's HorizontalPodAutoscaler: between its replica bounds, on average CPU use."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(settings, GATEWAY, GATEWAY),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY},
            "minReplicas": settings.gateway_replicas,
            "maxReplicas": settings.gateway_max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": GATEWAY_CPU_TARGET},
                    },
                }
            ],
        },
    }


def _labels(component: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": APP}
    if component is not None:
        labels["app.kubernetes.io/component"] = component
    labels["app.kubernetes.io/part-of"] = APP
    return labels


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}


def _metadata(settings: InstallSettings, name: str, component: str | None) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": _labels(component)}


def _secret(settings: InstallSettings, name: str, component: str | None, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(settings, name, component),
        "type": "Opaque",
        "stringData": data,
    }


def _deployment(
    settings: InstallSettings, name: str, pod: dict[str, Any], *, replicas: int | None, strategy: dict[str, Any]
) -> dict[str, Any]:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    # the image runs as uid 10001; together these meet the "restricted" Pod Security Standard
    security = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    if settings.image_pull_secrets:
        pod = {**pod, "imagePullSecrets": [{"name": secret} for secret in settings.image_pull_secrets]}
    spec |= {
        "selector": {"matchLabels": _selector(name)},
        "strategy": strategy,
        "template": {"metadata": {"labels": _labels(name)}, "spec": {**pod, "securityContext": security}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(settings, name, name), "spec": spec}


def _container(
    settings: InstallSettings, role: str, args: list[str], port: int, secret: str, *, cpu: str
) -> dict[str, Any]:
    """The ``cortex <role>`` container: backends from their Secret, the role's own Secret if it exists.

    The gateway is ready while it reaches its backend (``/readyz``), so a Service sends no traffic to
    one cut off from it; liveness is ``/healthz`` for both roles (a cut-off gateway is not restarted).
    """
    readiness_path = "/readyz" if role == GATEWAY else "/healthz"
    return {
        "name": role,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cortex", role],
        "args": args,
        "envFrom": [{"secretRef": {"name": BACKENDS_SECRET}}, {"secretRef": {"name": secret, "optional": True}}],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": _probe(readiness_path, period=5, failures=2),
        "livenessProbe": _probe("/healthz", period=10, failures=6),
        "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    # both servers answer /healthz (and the gateway /readyz) without a token or key
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


class _Dumper(yaml.SafeDumper):
    """Writes every repeated value out in full (a manifest people read has no ``&anchors``), texts as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # a cli.yaml inside a Secret reads as the file it is, not as one escaped line
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def install_manifest(settings: InstallSettings, *, secrets: bool) -> str:
    """:func:`install_objects` as one multi-document YAML text, after :func:`manifest_header`."""
    body = yaml.dump_all(install_objects(settings, secrets=secrets), Dumper=_Dumper, sort_keys=False)
    return manifest_header(settings, secrets=secrets) + body


def manifest_header(settings: InstallSettings, *, secrets: bool) -> str:
    """The comment a manifest starts with: how it was made and, without its Secrets, how to create them."""
    ns = settings.namespace
    lines = [
        f"cortex-async: the platform (operator, gateway, their access rights) in namespace {ns}.",
        "",
        "Generated by cortex.runtime.kubeinstall.install_manifest; do not edit. To regenerate the checked-in",
        "deploy/kubernetes/cortex-async.yaml: CORTEX_UPDATE_MANIFESTS=1 pytest tests/kube/test_install.py",
        "",
    ]
    if secrets:
        lines += ["This file holds the platform's Secrets (URLs, token, keys): keep it out of any repository."]
        return "".join(f"# {line}".rstrip() + "\n" for line in lines)
    lines += [
        "The Secrets are not in this file. Create them first, then apply it:",
        "",
        f"  kubectl create namespace {ns}",
        "  # the backends, the queue and the store on one server (the same URL); add AWS_ACCESS_KEY_ID,",
        "  # AWS_SECRET_ACCESS_KEY and AWS_REGION for S3 blobs:",
        f"  kubectl -n {ns} create secret generic {BACKENDS_SECRET} \\",
        f"    --from-literal=CORTEX_QUEUE_URL=postgresql://cortex:PASSWORD@postgres.{ns}.svc:5432/cortex \\",
        f"    --from-literal=CORTEX_STORE_URL=postgresql://cortex:PASSWORD@postgres.{ns}.svc:5432/cortex \\",
        "    --from-literal=CORTEX_BLOBS_URL=s3://BUCKET/PREFIX",
        "  # the replicas' cli.yaml (with an operator token, add operator_token: READ_TOKEN, the read-only one",
        "  # below, never the operator token; and api_key: CHAIN_KEY if set):",
        "  printf 'default_environment: default\\nenvironments:\\n- name: default\\n  operator_endpoint: %s\\n' \\",
        f"    {settings.operator_url} > cli.yaml",
        f"  kubectl -n {ns} create secret generic {CLIENT_SECRET} --from-file=cli.yaml",
        "  #   with a chaining key, also: --from-literal=api_key=CHAIN_KEY",
        "  # optional: the keys every API requires, as digests (printf %s KEY | sha256sum), and the chaining key's:",
        f"  kubectl -n {ns} create secret generic {GATEWAY_SECRET} \\",
        "    --from-literal=CORTEX_API_KEYS='sha256:HEX sha256:HEX' \\",
        "    --from-literal=CORTEX_GATEWAY_INTERNAL_KEYS=sha256:HEX_OF_CHAIN_KEY",
        "  # optional: the token the operator requires (the CLI sends it from its own cli.yaml), and the",
        "  # read-only one the replicas' cli.yaml holds:",
        f"  kubectl -n {ns} create secret generic {OPERATOR_SECRET} --from-literal=CORTEX_OPERATOR_TOKEN=TOKEN \\",
        "    --from-literal=CORTEX_OPERATOR_READ_TOKEN=READ_TOKEN",
        "  kubectl apply -f deploy/kubernetes/cortex-async.yaml",
        "",
        "Or let the CLI create the Secrets and apply everything (--dry-run prints it, Secrets included):",
        "  cortex cluster up --provider kubernetes --queue URL --store URL --blobs URL",
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)
