"""The Kubernetes objects one AsyncAPI becomes, as Cortex's operator made them (reference §5.1, §6.5).

A pure function of the spec and the cluster's settings, shared by ``cortex render`` and the
Kubernetes runtime, so what users review is exactly what the runtime applies. Per API:

- a Deployment ``api-<name>``: the user's containers plus the ``dequeuer`` sidecar, an ``emptyDir``
  at ``/mnt`` shared by the user containers, the client configuration at ``/cortex/client``,
  Cortex's labels and annotations, ``update_strategy`` as its rolling update, ``node_groups`` as
  node affinity, ``compute`` as requests and limits.

Readiness is the dequeuer's: it runs the user's readiness probes itself (as Cortex's did) and its
own ``/healthz`` is the pod's readiness probe. Liveness probes and ``pre_stop`` go on the user
containers. The backends' URLs come from a Secret every dequeuer reads as its environment.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cortex import __version__
from cortex.errors import CortexError
from cortex.spec import ApiSpec, Container, PreStop, Probe
from cortex.spec.kubernetes import DEFAULT_GPU_RESOURCE

#: the taint GPU nodes carry (EKS, GKE), tolerated by every API that asks for a GPU
GPU_TAINT = "nvidia.com/gpu"
#: Inferentia chips, as a resource and as the taint of their nodes
INF_RESOURCE = "aws.amazon.com/neuron"
#: labels every API's Deployment and pods carry (Cortex's names)
API_NAME, API_KIND, API_ID, SPEC_ID, DEPLOYMENT_ID = "apiName", "apiKind", "apiID", "specID", "deploymentID"
#: the label that marks a Kubernetes object as one of cortex's APIs
API_LABEL = "cortex.dev/api"
#: lower is removed first when a Deployment scales in (Kubernetes ≥ 1.22)
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: the dequeuer's port for ``/healthz``, ``/status`` and ``/metrics`` (reserved, as in Cortex)
ADMIN_PORT = 15000
#: where the client configuration (``cli.yaml``) is mounted in every container
CLIENT_DIR = "/cortex/client"
#: the folder the user containers of one replica share
MNT = "/mnt"
#: the ``preStop`` of a user container without one: answered by its dequeuer once it has drained
DRAIN_HOOK = {"httpGet": {"path": "/drain", "port": ADMIN_PORT}}

# Cortex's annotation keys (pkg/types/userconfig/config_key.go)
_ANNOTATIONS = {
    "endpoint": "networking.cortex.dev/endpoint",
    "max_concurrency": "pod.cortex.dev/max-concurrency",
    "min_replicas": "autoscaling.cortex.dev/min-replicas",
    "max_replicas": "autoscaling.cortex.dev/max-replicas",
    "target_in_flight": "autoscaling.cortex.dev/target-in-flight",
    "window": "autoscaling.cortex.dev/window",
    "downscale_stabilization_period": "autoscaling.cortex.dev/downscale-stabilization-period",
    "upscale_stabilization_period": "autoscaling.cortex.dev/upscale-stabilization-period",
    "max_downscale_factor": "autoscaling.cortex.dev/max-downscale-factor",
    "max_upscale_factor": "autoscaling.cortex.dev/max-upscale-factor",
    "downscale_tolerance": "autoscaling.cortex.dev/downscale-tolerance",
    "upscale_tolerance": "autoscaling.cortex.dev/upscale-tolerance",
}
_DURATIONS = {"window", "downscale_stabilization_period", "upscale_stabilization_period"}


@dataclasses.dataclass(frozen=True, slots=True)
class KubeSettings:
    """What every API's objects share: where the cluster's services and secrets are.

    Attributes:
        namespace: Where the APIs run (the operator's namespace).
        image: The platform image; its ``dequeuer`` command runs beside the user's containers.
        backends_secret: A Secret whose keys (``CORTEX_QUEUE_URL``, ``CORTEX_STORE_URL``,
            ``CORTEX_BLOBS_URL``) are the dequeuers' environment.
        client_secret: A Secret holding ``cli.yaml`` (and the replicas' gateway key as ``api_key``),
            mounted at ``/cortex/client``.
        gateway_url: ``CORTEX_GATEWAY_URL``, for chaining.
        node_group_label: The node label ``node_groups`` match (EKS's managed node groups set this one).
        grace_period: Seconds a pod has to drain when removed (Cortex: 60).
        lease_seconds: The dequeuer's lease on a request, renewed while it runs.
        user_image_pull_policy: For the user's images; None leaves Kubernetes' default (``Always`` for
            ``:latest`` or no tag, else ``IfNotPresent``). Cortex always set ``Always``, which breaks images
            loaded into a local cluster (kind, minikube) without a registry.
        version: ``CORTEX_VERSION``.
        image_pull_secrets: Secrets of type ``kubernetes.io/dockerconfigjson`` the pods pull private images with.
    """

    namespace: str = "cortex"
    image: str = f"ghcr.io/cortex-async/cortex-async:{__version__}"
    backends_secret: str = "cortex-backends"
    client_secret: str = "cortex-client"
    gateway_url: str = "http://gateway.cortex.svc.cluster.local:8888"
    node_group_label: str = "eks.amazonaws.com/nodegroup"
    grace_period: int = 60
    lease_seconds: float = 30.0
    user_image_pull_policy: str | None = None
    version: str = __version__
    image_pull_secrets: tuple[str, ...] = ()


def deployment_name(api: str) -> str:
    """The Deployment that runs ``api`` (Cortex's name)."""
    return f"api-{api}"


def selector(api: str) -> dict[str, str]:
    """The labels that select ``api``'s pods (they never change over the API's life)."""
    return {API_NAME: api, API_KIND: "AsyncAPI"}


def check_images(spec: ApiSpec) -> None:
    """Raise :class:`CortexError` unless every container names the image Kubernetes runs."""
    for index, container in enumerate(spec.pod.containers):
        if container.image is None:
            raise CortexError(
                f"api {spec.name}: pod.containers[{index}] ({container.name}): no image; Kubernetes runs images,"
                " so set image (command and args, if set, override its entrypoint)"
            )


def api_objects(spec: ApiSpec, *, deployment_id: str, replicas: int, settings: KubeSettings) -> list[dict[str, Any]]:
    """The objects ``spec`` becomes, in the order they are applied.

    Raises:
        CortexError: a container has no image.
    """
    return [api_deployment(spec, deployment_id=deployment_id, replicas=replicas, settings=settings)]


def api_deployment(spec: ApiSpec, *, deployment_id: str, replicas: int, settings: KubeSettings) -> dict[str, Any]:
    """The Deployment ``api-<name>``: ``replicas`` pods of the user's containers plus a dequeuer.

    Raises:
        CortexError: a container has no image.
    """
    check_images(spec)
    spec_id = spec.spec_id()
    labels = {**selector(spec.name), API_ID: spec_id, SPEC_ID: spec_id, DEPLOYMENT_ID: deployment_id, API_LABEL: "true"}
    strategy = spec.update_strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(spec.name),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": api_annotations(spec),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(spec.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": strategy.max_surge, "maxUnavailable": strategy.max_unavailable},
            },
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {"kubectl.kubernetes.io/default-container": spec.pod.containers[0].name},
                },
                "spec": _pod_spec(spec, settings),
            },
        },
    }


def api_annotations(spec: ApiSpec) -> dict[str, str]:
    """Cortex's annotations: the endpoint, ``max_concurrency`` and the autoscaling spec (not ``init_replicas``)."""
    values: dict[str, Any] = {
        "endpoint": spec.networking.endpoint,
        "max_concurrency": spec.pod.max_concurrency,
        **spec.autoscaling.model_dump(exclude={"init_replicas"}),
    }
    return {
        _ANNOTATIONS[key]: go_duration(value) if key in _DURATIONS else _number(value) for key, value in values.items()
    }


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it (Cortex's annotations): ``1m0s``, ``5m0s``, ``1h0m0s``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pod_spec(spec: ApiSpec, settings: KubeSettings) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "mnt", "emptyDir": {}},
        {"name": "client-config", "secret": {"secretName": settings.client_secret, "items": [_CLI_YAML]}},
    ]
    # each container its own /dev/shm of the size it asks for (as Cortex did): a pod-wide one sized to
    # the largest request would let every container fill it, and all of it counts as the pod's memory
    for index, container in enumerate(spec.pod.containers):
        if container.compute.shm:
            volumes.append(
                {"name": shm_volume(index), "emptyDir": {"medium": "Memory", "sizeLimit": container.compute.shm}}
            )
    containers = [_user_container(spec, index, settings) for index in range(len(spec.pod.containers))]
    pod: dict[str, Any] = {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": settings.grace_period,
        # no container of an API calls the Kubernetes API: no token to steal
        "automountServiceAccountToken": False,
        "containers": [*containers, _dequeuer(spec, settings)],
        "volumes": volumes,
    }
    scheduling = spec.kubernetes
    if scheduling.runtime_class_name is not None:
        pod["runtimeClassName"] = scheduling.runtime_class_name
    if scheduling.priority_class_name is not None:
        pod["priorityClassName"] = scheduling.priority_class_name
    if scheduling.node_selector:
        pod["nodeSelector"] = dict(sorted(scheduling.node_selector.items()))
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    tolerations = _tolerations(spec)
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.node_groups:
        pod["affinity"] = _node_affinity(spec.node_groups, settings.node_group_label)
    return pod


def shm_volume(index: int) -> str:
    """The name of the ``/dev/shm`` volume of the container at ``index``."""
    return f"dshm-{index}"


_CLI_YAML = {"key": "cli.yaml", "path": "cli.yaml"}


def _tolerations(spec: ApiSpec) -> list[dict[str, Any]]:
    """Cortex's (GPU and Inferentia nodes are tainted on EKS and GKE), then the API's own."""
    keys = []
    if any(c.compute.gpu for c in spec.pod.containers):
        keys.append(GPU_TAINT)
    if any(c.compute.inf for c in spec.pod.containers):
        keys.append(INF_RESOURCE)
    implied: list[dict[str, Any]] = [{"key": key, "operator": "Exists", "effect": "NoSchedule"} for key in keys]
    own = [toleration.to_kubernetes() for toleration in spec.kubernetes.tolerations]
    return implied + [toleration for toleration in own if toleration not in implied]


def _node_affinity(groups: list[str], label: str) -> dict[str, Any]:
    """Required: one of ``groups``; preferred: the earlier groups first (Cortex's node-group priority)."""
    preferred = [
        {"weight": max(1, 100 - 10 * index), "preference": {"matchExpressions": [_in(label, [group])]}}
        for index, group in enumerate(groups)
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [_in(label, groups)]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        }
    }


def _in(key: str, values: list[str]) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def _user_container(spec: ApiSpec, index: int, settings: KubeSettings) -> dict[str, Any]:
    container = spec.pod.containers[index]
    # sorted, as Cortex did: writing the same variables in another order must not roll the pods
    env = [{"name": key, "value": value} for key, value in sorted(container.env.items())]
    env += [{"name": key, "value": value} for key, value in _cortex_env(spec, settings).items()]
    # chaining through the gateway: the replicas' own key, when the cluster has one
    env.append(_from_secret("CORTEX_API_KEY", settings.client_secret, "api_key"))
    mounts = [{"name": "mnt", "mountPath": MNT}, {"name": "client-config", "mountPath": CLIENT_DIR, "readOnly": True}]
    if container.compute.shm:
        mounts.append({"name": shm_volume(index), "mountPath": "/dev/shm"})
    out: dict[str, Any] = {"name": container.name, "image": container.image}
    if settings.user_image_pull_policy is not None:
        out["imagePullPolicy"] = settings.user_image_pull_policy
    if container.command:
        out["command"] = list(container.command)
    if container.args:
        out["args"] = list(container.args)
    out |= {"env": env, "resources": resources(container, spec.kubernetes.gpu_resource), "volumeMounts": mounts}
    if container.liveness_probe is not None:
        out["livenessProbe"] = probe(container.liveness_probe)
    # without a hook of its own, a container's SIGTERM waits until the dequeuer has drained (see
    # cortex.dequeuer.service.admin_app): all containers of a removed pod are stopped at once
    pre_stop = handler(container.pre_stop) if container.pre_stop is not None else DRAIN_HOOK
    out["lifecycle"] = {"preStop": pre_stop}
    return out


def _cortex_env(spec: ApiSpec, settings: KubeSettings) -> dict[str, str]:
    """The worker contract's variables (DESIGN §3), as the local runtime sets them."""
    return {
        "CORTEX_PORT": str(spec.pod.port),
        "CORTEX_VERSION": settings.version,
        "CORTEX_LOG_LEVEL": "INFO",
        "CORTEX_CLI_CONFIG_DIR": CLIENT_DIR,
        "CORTEX_GATEWAY_URL": settings.gateway_url,
        # the dequeuer is a sidecar of the pod: its admin port, for progress reports
        "CORTEX_DEQUEUER_URL": f"http://localhost:{ADMIN_PORT}",
        "CORTEX_MNT": MNT,
        "CORTEX_API_NAME": spec.name,
    }


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}


def resources(container: Container, gpu_resource: str = DEFAULT_GPU_RESOURCE) -> dict[str, Any]:
    """``compute`` as requests; GPUs (as ``gpu_resource``) and Inferentia chips as limits too.

    Kubernetes requires an extended resource's limit, equal to its request.
    """
    compute = container.compute
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if compute.cpu is not None:
        requests["cpu"] = compute.cpu
    if compute.mem is not None:
        requests["memory"] = compute.mem
    for key, count in ((gpu_resource, compute.gpu), (INF_RESOURCE, compute.inf)):
        if count:
            requests[key] = limits[key] = str(count)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def probe(spec: Probe) -> dict[str, Any]:
    """A probe in Kubernetes' form (the same fields under camelCase names)."""
    out = handler(spec)
    out |= {
        "initialDelaySeconds": spec.initial_delay_seconds,
        "timeoutSeconds": spec.timeout_seconds,
        "periodSeconds": spec.period_seconds,
        "successThreshold": spec.success_threshold,
        "failureThreshold": spec.failure_threshold,
    }
    return out


def handler(spec: Probe | PreStop) -> dict[str, Any]:
    """The one action of a probe or ``pre_stop``: ``httpGet``, ``tcpSocket`` or ``exec``."""
    if spec.http_get is not None:
        return {"httpGet": {"path": spec.http_get.path, "port": spec.http_get.port}}
    if isinstance(spec, Probe) and spec.tcp_socket is not None:
        return {"tcpSocket": {"port": spec.tcp_socket.port}}
    assert spec.exec is not None  # the spec's validation allows exactly one action
    return {"exec": {"command": list(spec.exec.command)}}


def _dequeuer(spec: ApiSpec, settings: KubeSettings) -> dict[str, Any]:
    # the dequeuer stops taking work at SIGTERM and hands back what it cannot finish before the kill
    drain = max(1, settings.grace_period - 5)
    args = ["--api", spec.name, "--user-port", str(spec.pod.port), "--admin-host", "0.0.0.0"]
    args += ["--admin-port", str(ADMIN_PORT), "--lease-seconds", _number(settings.lease_seconds)]
    args += ["--grace-period", str(drain)]
    return {
        "name": "dequeuer",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "cortex.dequeuer"],
        "args": args,
        "env": [
            {"name": "CORTEX_VERSION", "value": settings.version},
            {"name": "CORTEX_LOG_LEVEL", "value": "INFO"},
            {"name": "CORTEX_REPLICA_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"secretRef": {"name": settings.backends_secret}}],
        "ports": [{"name": "admin", "containerPort": ADMIN_PORT}],
        # the pod is ready when the dequeuer's view of the user's readiness probes is (Cortex's timings,
        # but every 2 s rather than 10: a rollout waits on it)
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "admin"},
            "initialDelaySeconds": 1,
            "timeoutSeconds": 1,
            "periodSeconds": 2,
            "successThreshold": 1,
            "failureThreshold": 1,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
    }
