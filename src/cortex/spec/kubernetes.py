"""The ``kubernetes:`` section of an API: where its pods may be scheduled, and which GPUs they get.

It only matters on Kubernetes; the local runtimes ignore it (``cortex deploy`` says so). Each field is
checked the way kube-apiserver checks the pod field it becomes, so a configuration that validates here
is not refused by the cluster later:

- ``runtime_class_name`` -> ``runtimeClassName`` (a DNS subdomain), for example ``nvidia`` on k3s;
- ``priority_class_name`` -> ``priorityClassName`` (a DNS subdomain);
- ``node_selector`` -> ``nodeSelector`` (label keys and values);
- ``tolerations`` -> ``tolerations`` (with Kubernetes' rules on ``operator``, ``value`` and ``effect``);
- ``gpu_resource`` -> the resource name ``compute.gpu`` is requested as (default ``nvidia.com/gpu``;
  MIG and shared GPUs have their own, such as ``nvidia.com/mig-1g.10gb``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from cortex.spec.fields import show, spec_error

_STRICT = ConfigDict(extra="forbid", frozen=True)
#: the resource ``compute.gpu`` is requested as unless ``kubernetes.gpu_resource`` says otherwise
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

_DNS_1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_1123_SUBDOMAIN = re.compile(rf"{_DNS_1123_LABEL}(\.{_DNS_1123_LABEL})*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def check_subdomain(value: str) -> str:
    """A DNS-1123 subdomain (the names of RuntimeClasses, PriorityClasses and most objects)."""
    if len(value) > 253:
        raise ValueError(f"must be at most 253 characters (got {len(value)})")
    if _DNS_1123_SUBDOMAIN.fullmatch(value) is None:
        raise ValueError(
            "must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
            f" (got {show(value)})"
        )
    return value


def check_qualified_name(value: str, *, prefixed: bool = False) -> str:
    """A label key or resource name: an optional DNS-subdomain prefix and ``/``, then a name of at most 63.

    With ``prefixed``, the prefix is required (extended resources such as ``nvidia.com/gpu`` have one).
    """
    prefix, slash, name = value.rpartition("/")
    if prefixed and not slash:
        raise ValueError(f'must have a domain prefix, as in "nvidia.com/gpu" (got {show(value)})')
    if slash:
        try:
            check_subdomain(prefix)
        except ValueError as exc:
            raise ValueError(f"prefix {show(prefix)}: {exc}") from None
    if not name or len(name) > 63 or _QUALIFIED_NAME.fullmatch(name) is None:
        raise ValueError(
            "must be at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit,"
            f" after an optional DNS-subdomain prefix and '/' (got {show(value)})"
        )
    return value


def _label_key(value: str) -> str:
    return check_qualified_name(value)


def _label_value(value: str) -> str:
    if len(value) > 63 or _LABEL_VALUE.fullmatch(value) is None:
        raise ValueError(
            "must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter"
            f" or digit (got {show(value)})"
        )
    return value


def _node_selector(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        try:
            _label_key(key)
        except ValueError as exc:
            raise spec_error(f"label key: {exc}", key) from None
        try:
            _label_value(item)
        except ValueError as exc:
            raise spec_error(str(exc), key) from None
    return value


def _gpu_resource(value: str) -> str:
    check_qualified_name(value, prefixed=True)
    if value.split("/")[0] in ("kubernetes.io", "requests.kubernetes.io") or value.endswith(".kubernetes.io"):
        raise ValueError(f"must not be in the kubernetes.io domain, which Kubernetes reserves (got {show(value)})")
    return value


def _one_of(*choices: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)} (got {show(value)})")
        return value

    return check


class Toleration(BaseModel):
    """One toleration: the pods may run on nodes with a matching taint (Kubernetes' ``Toleration``)."""

    model_config = _STRICT

    key: Annotated[StrictStr, AfterValidator(lambda v: check_qualified_name(v) if v else v)] = ""
    operator: Annotated[str, BeforeValidator(_one_of("Equal", "Exists"))] = "Equal"
    value: Annotated[StrictStr, AfterValidator(_label_value)] = ""
    effect: Annotated[str, BeforeValidator(_one_of("NoSchedule", "PreferNoSchedule", "NoExecute"))] | None = None
    toleration_seconds: StrictInt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # kube-apiserver's rules (validateTolerations), in its words where it has them
        if not self.key and self.operator != "Exists":
            raise spec_error('must be Exists when key is empty, which means "match all values and keys"', "operator")
        if self.operator == "Exists" and self.value:
            raise spec_error("must be empty when operator is Exists", "value")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise spec_error("must be NoExecute when toleration_seconds is set", "effect")
        return self

    def to_kubernetes(self) -> dict[str, object]:
        """The toleration in a pod's ``tolerations``, with only the fields that are set."""
        out: dict[str, object] = {}
        if self.key:
            out["key"] = self.key
        out["operator"] = self.operator
        if self.value:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


class KubernetesOptions(BaseModel):
    """The ``kubernetes:`` section: scheduling and GPU resource names; ignored by the local runtimes."""

    model_config = _STRICT

    runtime_class_name: Annotated[StrictStr, AfterValidator(check_subdomain)] | None = None
    priority_class_name: Annotated[StrictStr, AfterValidator(check_subdomain)] | None = None
    node_selector: Annotated[dict[StrictStr, StrictStr], AfterValidator(_node_selector)] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    gpu_resource: Annotated[StrictStr, AfterValidator(_gpu_resource)] = DEFAULT_GPU_RESOURCE

    def is_default(self) -> bool:
        """Whether nothing is set (the section is absent or empty)."""
        return self == KubernetesOptions()
