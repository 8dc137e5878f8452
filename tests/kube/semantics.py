"""kube-apiserver's own validation, past the OpenAPI schema: the rules an object can break while well-typed.

Each check answers the first error as kube-apiserver words it (``<field path>: <type>: <detail>``, its
``field.Error`` form), so the emulator's 422 reads like the real one. Covered, for Deployments and Pods (a
Deployment's pod template is checked at ``spec.template.spec``):

- ``metadata.name``: a DNS-1123 subdomain (``Bad_Name`` is refused);
- a Deployment's ``selector`` must select its template's labels, and cannot change after creation;
- ``maxUnavailable`` at most 100%;
- container names unique; volume names unique; every ``volumeMounts[].name`` a volume of the pod;
- resource quantities parse (``memory: lots`` is refused); an extended resource (a GPU) needs a limit,
  equal to its request; a cpu or memory request is at most its limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.kube.resources import matches_labels, selector_string

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3)}
_DECIMAL |= {"M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
#: resources the scheduler may overcommit (every other, an extended resource, needs limit == request)
_OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")


def quantity(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity (``500m``, ``1Gi``, ``1e3``), or None if it is not one."""
    match = re.fullmatch(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?", text)
    if match is None:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Decimal(10) ** int(suffix[1:])


def _go_map(labels: dict[str, Any]) -> str:
    # how Go's %#v prints a map[string]string, which the API server's message contains
    return "map[string]string{" + ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def first_error(obj: dict[str, Any], old: dict[str, Any] | None) -> str | None:
    """The first rule ``obj`` breaks (``old``: the stored object it would replace), or None."""
    return next(iter(errors(obj, old)), None)


def errors(obj: dict[str, Any], old: dict[str, Any] | None) -> Iterator[str]:
    """Every rule ``obj`` breaks, in kube-apiserver's words."""
    name = (obj.get("metadata") or {}).get("name")
    if (
        isinstance(name, str)
        and obj.get("kind") in ("Deployment", "Pod", "Secret", "ConfigMap")
        and not re.fullmatch(_SUBDOMAIN, name)
    ):
        yield (
            f"metadata.name: Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain must consist of lower"
            " case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            f" (e.g. 'example.com', regex used for validation is '{_SUBDOMAIN}')"
        )
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    if obj.get("kind") == "Deployment":
        yield from _deployment(spec, old.get("spec") if old is not None else None)
    elif obj.get("kind") == "Pod":
        yield from _pod(spec, "spec")


def _deployment(spec: dict[str, Any], old: dict[str, Any] | None) -> Iterator[str]:
    selector = spec.get("selector") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if old is not None and old.get("selector") != selector:
        yield f"spec.selector: Invalid value: {json.dumps(selector)}: field is immutable"
    if not selector_string(selector):
        yield f"spec.selector: Invalid value: {json.dumps(selector)}: empty selector is invalid for deployment"
    elif not matches_labels(labels, selector_string(selector)):
        message = "`selector` does not match template `labels`"
        yield f"spec.template.metadata.labels: Invalid value: {_go_map(labels)}: {message}"
    unavailable = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable")
    if isinstance(unavailable, str) and unavailable.endswith("%") and int(unavailable[:-1] or 0) > 100:
        at = "spec.strategy.rollingUpdate.maxUnavailable"
        yield f'{at}: Invalid value: "{unavailable}": must not be greater than 100%'
    yield from _pod(template.get("spec") or {}, "spec.template.spec")


def _pod(pod: dict[str, Any], at: str) -> Iterator[str]:
    volumes: set[str] = set()
    for index, volume in enumerate(pod.get("volumes") or []):
        if volume.get("name") in volumes:
            yield f'{at}.volumes[{index}].name: Duplicate value: "{volume.get("name")}"'
        volumes.add(volume.get("name"))
    names: set[str] = set()
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(kind) or []):
            where = f"{at}.{kind}[{index}]"
            if container.get("name") in names:
                yield f'{where}.name: Duplicate value: "{container.get("name")}"'
            names.add(container.get("name"))
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    yield f'{where}.volumeMounts[{mount_index}].name: Not found: "{mount.get("name")}"'
            yield from _resources(container.get("resources") or {}, f"{where}.resources")


def _resources(resources: dict[str, Any], at: str) -> Iterator[str]:
    values: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    for part in ("limits", "requests"):
        for name, text in (resources.get(part) or {}).items():
            value = quantity(str(text))
            if value is None:
                yield (
                    f"{at}.{part}[{name}]: Invalid value: {json.dumps(text)}: quantities must match the regular"
                    f" expression '{_QUANTITY}'"
                )
                continue
            values[part][name] = value
    limits = resources.get("limits") or {}
    for name, request in values["requests"].items():
        shown = (resources.get("requests") or {})[name]
        extended = name not in _OVERCOMMITTABLE and not name.startswith("hugepages-")
        if extended and name not in values["limits"]:
            yield f"{at}.limits: Required value: Limit must be set for non overcommitable resources"
        elif extended and request != values["limits"][name]:
            yield f'{at}.requests[{name}]: Invalid value: "{shown}": must be equal to {name} limit of {limits[name]}'
        elif name in values["limits"] and request > values["limits"][name]:
            yield (
                f'{at}.requests[{name}]: Invalid value: "{shown}": must be less than or equal to {name} limit of'
                f" {limits[name]}"
            )
