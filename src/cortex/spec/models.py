"""The configuration of one AsyncAPI (reference §6), plus cortex-async's ``async:`` extension.

Each class is one YAML object. Defaults that depend on another field (``init_replicas`` on
``min_replicas``, ``target_in_flight`` on ``pod.max_concurrency``, the endpoint on the name) are
filled into the input before validation, so every field has its final, fully typed value.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from cortex.auth import normalize_key
from cortex.errors import SpecError
from cortex.spec.container import Container
from cortex.spec.durations import format_duration
from cortex.spec.fields import (
    DNS_1035,
    ApiName,
    ByteSize,
    Endpoint,
    IntOrPercent,
    NodeGroup,
    Number,
    Port,
    Seconds,
    Section,
    show,
    spec_error,
)
from cortex.spec.kubernetes import KubernetesOptions
from cortex.spec.messages import describe_errors

_STRICT = ConfigDict(extra="forbid", frozen=True)
_OTHER_KINDS = ("RealtimeAPI", "BatchAPI", "TaskAPI", "TrafficSplitter")
_NOT_SUPPORTED = "{kind} is not supported: only AsyncAPI is supported by cortex-async"


def _at_least(minimum: float, *, exclusive: bool = False) -> AfterValidator:
    """A check on a duration, with the bound in the message written as a duration."""

    def check(value: float) -> float:
        if value < minimum or (exclusive and value == minimum):
            bound = "greater than" if exclusive else "at least"
            raise ValueError(f"must be {bound} {format_duration(minimum)} (got {format_duration(value)})")
        return value

    return AfterValidator(check)


def _window(value: float) -> float:
    # Prometheus is scraped every 10 s, so the window is a whole number of scrapes.
    if value < 10 or round(value * 1000) % 10_000:
        raise ValueError(f"must be at least 10s and a multiple of 10s (got {format_duration(value)})")
    return value


def _valid_int(value: object, fallback: int) -> int:
    """``value`` if it is an int; otherwise ``fallback``, since its own error is reported anyway."""
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


class Pod(BaseModel):
    """The replica: its containers, the port requests are sent to, and how many at once."""

    model_config = _STRICT

    port: Port = 8080
    max_concurrency: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    containers: Annotated[list[Container], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_containers(self) -> Pod:
        seen: dict[str, int] = {}
        for index, container in enumerate(self.containers):
            if container.name in seen:
                message = f'duplicate container name "{container.name}" (also containers[{seen[container.name]}])'
                raise spec_error(message, "containers", index, "name")
            seen[container.name] = index
        gpu = [c.name for c in self.containers if c.compute.gpu]
        inf = [c.name for c in self.containers if c.compute.inf]
        if gpu and inf:
            raise spec_error(
                f"GPU and Inferentia can't both be used in one pod (gpu: {', '.join(gpu)}; inf: {', '.join(inf)})",
                "containers",
            )
        return self


class Autoscaling(BaseModel):
    """How the replica count follows the queue (reference §6.4 and §7); durations in seconds."""

    model_config = _STRICT

    min_replicas: Annotated[StrictInt, Field(ge=0)] = 1
    max_replicas: Annotated[StrictInt, Field(gt=0)] = 100
    init_replicas: Annotated[StrictInt, Field(ge=0)] = 1  # default: min_replicas
    target_in_flight: Annotated[Number, Field(gt=0)] = 1.0  # default: pod.max_concurrency
    window: Annotated[Seconds, AfterValidator(_window)] = 60.0
    downscale_stabilization_period: Annotated[Seconds, _at_least(0)] = 300.0
    upscale_stabilization_period: Annotated[Seconds, _at_least(0)] = 60.0
    max_downscale_factor: Annotated[Number, Field(ge=0, lt=1)] = 0.75
    max_upscale_factor: Annotated[Number, Field(gt=1)] = 1.5
    downscale_tolerance: Annotated[Number, Field(ge=0, lt=1)] = 0.05
    upscale_tolerance: Annotated[Number, Field(ge=0)] = 0.05

    @model_validator(mode="before")
    @classmethod
    def _default_init_replicas(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("init_replicas") is None:
            data = {**data, "init_replicas": _valid_int(data.get("min_replicas", 1), 1)}
        return data

    @model_validator(mode="after")
    def _check_bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            message = f"must be >= min_replicas (got {self.max_replicas} < {self.min_replicas})"
            raise spec_error(message, "max_replicas")
        if not self.min_replicas <= self.init_replicas <= self.max_replicas:
            message = (
                f"must be between min_replicas and max_replicas "
                f"(got {self.init_replicas}, not in {self.min_replicas}..{self.max_replicas})"
            )
            raise spec_error(message, "init_replicas")
        return self


class UpdateStrategy(BaseModel):
    """How a changed API rolls out: replicas added above, and removed below, the desired count."""

    model_config = _STRICT

    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"

    @model_validator(mode="after")
    def _can_progress(self) -> UpdateStrategy:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("max_surge and max_unavailable can't both be 0: the rollout could never progress")
        # kube-apiserver's rule (a surge above 100% is allowed there, so it is here)
        if isinstance(self.max_unavailable, str) and int(self.max_unavailable[:-1]) > 100:
            raise spec_error(f'must not be greater than 100% (got "{self.max_unavailable}")', "max_unavailable")
        return self


class Networking(BaseModel):
    """Where the API is served on the gateway."""

    model_config = _STRICT

    endpoint: Endpoint  # default "/<name>", filled by ApiSpec


def _http_url(value: object) -> object:
    if isinstance(value, str):
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError(f"must be an http:// or https:// URL with a host (got {show(value)})")
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"lists an entry twice ({', '.join(values)})")
    return values


#: ``progress`` (opt-in): the progress the user server reports, at most one delivery per request every few seconds
WebhookEvent = Literal["in_progress", "progress", "completed", "failed", "cancelled"]


class Webhook(BaseModel):
    """Where the API's request events are pushed (key ``async.webhook``)."""

    model_config = _STRICT

    url: Annotated[str, BeforeValidator(_http_url)]
    events: Annotated[list[WebhookEvent], Field(min_length=1), AfterValidator(_unique)] = [
        "completed",
        "failed",
        "cancelled",
    ]
    #: how long a delivery is retried (with backoff) before it is given up
    max_age: Annotated[Seconds, _at_least(60)] = 86400.0


class Retry(BaseModel):
    """Which failures are tried again, up to ``max_attempts`` (key ``async.retry``)."""

    model_config = _STRICT

    #: the user server refused or dropped the connection (as when its container crashed)
    connection: StrictBool = True
    #: the user server answered with a 5xx status
    http_5xx: StrictBool = False
    #: the first wait before trying again; doubled each time, at most 5 minutes
    backoff: Annotated[Seconds, _at_least(0, exclusive=True)] = 1.0


def _api_key(value: str) -> str:
    # kept as its digest from here on: the catalog, `cortex get` and the gateway never see the key
    return normalize_key(value)


class AsyncOptions(BaseModel):
    """cortex-async's extension (key ``async``): retention, limits, attempts, retries, webhooks and access."""

    model_config = _STRICT

    retention: Annotated[Seconds, _at_least(60)] = 7 * 86400.0
    max_payload_size: Annotated[ByteSize, Field(gt=0)] = 100 * 2**20
    request_timeout: Annotated[Seconds, _at_least(0, exclusive=True)] | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    retry: Annotated[Retry, Section] = Retry()
    webhook: Webhook | None = None
    #: keys this API accepts besides the cluster's (``Authorization: Bearer``), each kept as ``sha256:<hex>``
    api_keys: Annotated[list[Annotated[StrictStr, AfterValidator(_api_key)]], AfterValidator(_unique)] = []
    #: store and forward ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` to the user server
    forward_sensitive_headers: StrictBool = False


def _kind(value: object) -> object:
    if value == "AsyncAPI":
        return value
    if isinstance(value, str) and value in _OTHER_KINDS:
        raise ValueError(_NOT_SUPPORTED.format(kind=value))
    raise ValueError(f'must be "AsyncAPI" (got {show(value)})')


def _section(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The mapping under ``key`` as a copy (None for an absent key), or None if it isn't a mapping."""
    value = data.get(key)
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else None


class ApiSpec(BaseModel):
    """One API of the configuration file, validated, with every default filled."""

    model_config = _STRICT

    name: ApiName
    kind: Annotated[Literal["AsyncAPI"], BeforeValidator(_kind)]
    pod: Pod
    autoscaling: Annotated[Autoscaling, Section] = Autoscaling()
    node_groups: Annotated[list[NodeGroup], Field(min_length=1)] | None = None
    update_strategy: Annotated[UpdateStrategy, Section] = UpdateStrategy()
    networking: Annotated[Networking, Section]
    async_: Annotated[AsyncOptions, Section] = Field(default=AsyncOptions(), alias="async")
    kubernetes: Annotated[KubernetesOptions, Section] = KubernetesOptions()

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("kind")
        if isinstance(kind, str) and kind in _OTHER_KINDS:
            # Stop here: the rest of a RealtimeAPI's fields would only add noise to the one real error.
            raise spec_error(_NOT_SUPPORTED.format(kind=kind), "kind")
        data = dict(data)
        autoscaling = _section(data, "autoscaling")
        if autoscaling is not None and autoscaling.get("target_in_flight") is None:
            pod = data.get("pod")
            concurrency = pod.get("max_concurrency", 1) if isinstance(pod, dict) else 1
            autoscaling["target_in_flight"] = _valid_int(concurrency, 1)
            data["autoscaling"] = autoscaling
        networking = _section(data, "networking")
        if networking is not None and networking.get("endpoint") is None:
            name = data.get("name")
            valid = isinstance(name, str) and DNS_1035.fullmatch(name) is not None
            networking["endpoint"] = f"/{name}" if valid else "/_"  # placeholder: the name's error is shown
            data["networking"] = networking
        return data

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-compatible data under its YAML names; :meth:`from_dict` reads it back.

        An empty ``kubernetes`` section is left out, so specs written before it existed keep their id.
        """
        data = self.model_dump(mode="json", by_alias=True)
        if self.kubernetes.is_default():
            del data["kubernetes"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<stored spec>") -> ApiSpec:
        """Rebuild a spec from :meth:`to_dict` output (or from a parsed YAML item).

        Raises:
            SpecError: the data is not a valid API spec.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            label = f"api {show(name)}" if isinstance(name, str) else "api"
            lines = [
                f"{source}: {label}: {path + ': ' if path else ''}{msg}" for path, msg in describe_errors(exc, cls)
            ]
            raise SpecError("\n".join(lines)) from exc

    def spec_id(self) -> str:
        """A short, stable digest of the spec: equal specs, however written, have equal ids."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
