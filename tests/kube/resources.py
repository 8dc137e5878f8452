"""The resource kinds the emulator serves, and label and field selectors as the API server reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it lives in the URL space, its kind, and its subresources."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The name messages use: ``deployments.apps``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        """Whether ``status`` is a subresource: then writes to the main resource leave ``status`` alone."""
        return "status" in self.subresources


_STATUS = frozenset({"status"})

#: every resource the emulator serves; anything else is answered 404
RESOURCES = (
    ResourceType("", "v1", "Namespace", "namespaces", namespaced=False, subresources=_STATUS),
    ResourceType("", "v1", "ConfigMap", "configmaps"),
    ResourceType("", "v1", "Secret", "secrets"),
    ResourceType("", "v1", "Pod", "pods", subresources=frozenset({"status", "log"})),
    ResourceType("", "v1", "Service", "services", subresources=_STATUS),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts"),
    ResourceType("apps", "v1", "Deployment", "deployments", subresources=frozenset({"status", "scale"})),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", subresources=_STATUS),
)


def by_route(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource served at ``/api[s]/{group}/{version}/.../{plural}``, if any."""
    return next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None)


def by_plural(plural: str) -> ResourceType:
    """The resource named ``plural`` (plurals are unique among :data:`RESOURCES`); KeyError if unknown."""
    for resource in RESOURCES:
        if resource.plural == plural:
            return resource
    raise KeyError(f"the emulator serves no resource {plural!r}")


POD = by_plural("pods")
DEPLOYMENT = by_plural("deployments")


def by_kind(api_version: str, kind: str) -> ResourceType:
    """The resource of objects with this ``apiVersion`` and ``kind``; KeyError if unknown."""
    for resource in RESOURCES:
        if (resource.api_version, resource.kind) == (api_version, kind):
            return resource
    raise KeyError(f"the emulator serves no kind {api_version}/{kind}")


_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)|\s(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _requirements(selector: str) -> list[str]:
    """Split on the commas that separate requirements, not those inside ``in (a,b)``."""
    return [part for part in re.split(r",(?![^()]*\))", selector) if part.strip()]


def matches_labels(labels: dict[str, str], selector: str) -> bool:
    """Whether ``labels`` satisfy a label selector string (``a=b,c!=d,e,!f,g in (h,i),j notin (k)``).

    Raises:
        ValueError: ``selector`` is not a valid selector.
    """
    for requirement in _requirements(selector):
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise ValueError(f"unable to parse requirement: {requirement!r}")
        if match["absent"] is not None:
            if match["absent"] in labels:
                return False
            continue
        key, value = match["key"], labels.get(match["key"])
        if match["op"] in ("=", "=="):
            ok = value == match["value"]
        elif match["op"] == "!=":
            ok = value != match["value"]
        elif match["set"] is not None:
            choices = {choice.strip() for choice in match["values"].split(",")}
            ok = value in choices if match["set"] == "in" else value not in choices
        else:
            ok = key in labels
        if not ok:
            return False
    return True


def matches_fields(obj: dict[str, Any], selector: str) -> bool:
    """Whether ``obj`` satisfies a field selector on ``metadata.name`` / ``metadata.namespace`` (``=``, ``==``, ``!=``).

    Raises:
        ValueError: ``selector`` is not valid, or selects on a field the emulator does not index.
    """
    for requirement in _requirements(selector):
        match = re.fullmatch(r"\s*(metadata\.(?:name|namespace))\s*(==|=|!=)\s*([\w.-]*)\s*", requirement)
        if match is None:
            raise ValueError(f"field selector not supported by the emulator: {requirement!r}")
        field, op, expected = match.groups()
        actual = obj.get("metadata", {}).get(field.split(".")[1])
        if (actual == expected) != (op != "!="):
            return False
    return True


def selector_string(selector: dict[str, Any]) -> str:
    """A ``LabelSelector`` (``matchLabels``, ``matchExpressions``) as the string Scale's ``status.selector`` holds."""
    parts = [f"{key}={value}" for key, value in sorted(selector.get("matchLabels", {}).items())]
    for expression in selector.get("matchExpressions", []):
        key, op, values = expression["key"], expression["operator"], ",".join(expression.get("values", []))
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)
