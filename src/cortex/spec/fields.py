"""Field types shared by the configuration models: names, ports, durations, quantities.

Validators raise ``ValueError`` with a message that reads well after ``<field path>: ``;
:func:`spec_error` is for checks made on a whole object that belong to one of its fields.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictFloat, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from cortex.spec.durations import parse_cpu, parse_duration, parse_memory, parse_size

DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
RESERVED_PORTS = (8888, 15000)  # the operator's port and Istio's admin port in Cortex
#: the gateway's own paths (an API named "metrics" needs another endpoint)
RESERVED_ENDPOINTS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
MIN_CPU_MILLICORES = 20
MIN_MEMORY_BYTES = 20 * 2**20


def show(value: object) -> str:
    """Render a user's value for an error message: scalars as YAML/JSON would, containers by kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, set | frozenset):
        return "a set"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, datetime.date):  # YAML reads an unquoted 2024-01-01 as a date
        return f"the date {value.isoformat()}"
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def spec_error(message: str, *path: str | int) -> PydanticCustomError:
    """An error for ``path`` below the object being validated (the loader appends it to the loc)."""
    return PydanticCustomError("spec", "{message}", {"message": message, "path": path})


def check_dns_1035(value: str, max_length: int) -> str:
    """Check a Kubernetes DNS-1035 label, the form Cortex requires for API and container names."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters (got {len(value)})")
    if DNS_1035.fullmatch(value) is None:
        if DNS_1035.fullmatch(value + "a") is not None:
            raise ValueError(f"must not end with a dash (got {show(value)})")
        raise ValueError(f"must be lowercase letters, digits and dashes, starting with a letter (got {show(value)})")
    return value


def _api_name(value: str) -> str:
    check_dns_1035(value, 42)
    if value.startswith("b-"):
        # Cortex reserves the prefix for the internal names it derives (batch jobs' resources).
        raise ValueError(f'must not start with "b-" (got {show(value)})')
    return value


def _container_name(value: str) -> str:
    check_dns_1035(value, 63)
    if value in ("dequeuer", "proxy"):
        raise ValueError(f'"{value}" is reserved for cortex\'s own sidecars; choose another name')
    return value


def _port(value: int) -> int:
    if value in RESERVED_PORTS:
        raise ValueError(f"must not be 8888 or 15000, which cortex reserves (got {value})")
    return value


def _seconds(value: object) -> object:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError(f'must be a duration such as "30s" or "5m", or a number of seconds (got {show(value)})')


def _size(value: object) -> object:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_size(value)
    raise ValueError(f'must be a size such as "100Mi" or "10MB", or a number of bytes (got {show(value)})')


def _quantity_text(value: object) -> str:
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value.strip() if isinstance(value, str) else str(value)
    raise ValueError(f'must be a quantity such as "200m" or "1Gi" (got {show(value)})')


def _cpu(value: object) -> str:
    text = _quantity_text(value)
    if parse_cpu(text) < MIN_CPU_MILLICORES:
        raise ValueError(f"must be at least 20m (got {show(value)})")
    return text


def _memory(value: object) -> str:
    text = _quantity_text(value)
    if parse_memory(text) < MIN_MEMORY_BYTES:
        raise ValueError(f"must be at least 20Mi (got {show(value)})")
    return text


def _shm(value: object) -> str:
    text = _quantity_text(value)
    parse_memory(text)
    return text


def _int_or_percent(value: object) -> int | str:
    # Cortex cast both forms to a string; keeping ints as ints lets callers skip re-parsing.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+", text):
            return int(text)
        if re.fullmatch(r"\d+%", text):
            return text
    raise ValueError(f'must be a non-negative integer or a percentage such as "25%" (got {show(value)})')


def _endpoint(value: str) -> str:
    if len(value) > 1000:
        raise ValueError(f"must be at most 1000 characters (got {len(value)})")
    if re.fullmatch(r"[a-zA-Z0-9_\-./]*", value) is None:
        raise ValueError(f"may only contain letters, digits, '_', '-', '.' and '/' (got {show(value)})")
    if "//" in value:
        raise ValueError(f"must not contain '//' (got {show(value)})")
    canonical = "/" + value.strip("/")
    if canonical == "/":
        raise ValueError(f"must name a path other than '/' (got {show(value)})")
    if {".", ".."} & set(canonical.split("/")):
        # clients resolve dot segments before sending: such an endpoint could not be reached
        raise ValueError(f"must not contain '.' or '..' segments (got {show(value)})")
    if canonical in RESERVED_ENDPOINTS:
        raise ValueError(
            f"{canonical} is served by the gateway itself; set networking.endpoint to another path (got {show(value)})"
        )
    return canonical


def _node_group(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", value) is None:
        raise ValueError(f"must be letters, digits, '-' and '_' (got {show(value)})")
    return value


def _env(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of names to values (got {show(value)})")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", key) is None:
            raise spec_error(f"invalid variable name {show(key)}: use letters, digits, '_', '-' and '.'", key)
        if key.startswith(("CORTEX_", "KUBEXIT_")):
            raise spec_error("names starting with CORTEX_ or KUBEXIT_ are reserved for cortex", key)
        if isinstance(item, bool):
            env[key] = "true" if item else "false"  # what the YAML author typed, not Python's "True"
        elif isinstance(item, str | int | float):
            env[key] = str(item)
        else:
            raise spec_error(f"must be a string, number or boolean (got {show(item)})", key)
    return env


def _none_as_empty(value: Any) -> Any:
    # A YAML key with nothing under it (`autoscaling:`) parses as null; it means "all defaults".
    return {} if value is None else value


ApiName = Annotated[StrictStr, AfterValidator(_api_name)]
ContainerName = Annotated[StrictStr, AfterValidator(_container_name)]
Port = Annotated[StrictInt, Field(ge=1, le=65535), AfterValidator(_port)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
ByteSize = Annotated[int, BeforeValidator(_size)]
Cpu = Annotated[str, BeforeValidator(_cpu)]
Memory = Annotated[str, BeforeValidator(_memory)]
Shm = Annotated[str, BeforeValidator(_shm)]
IntOrPercent = Annotated[int | str, BeforeValidator(_int_or_percent)]
Endpoint = Annotated[StrictStr, AfterValidator(_endpoint)]
NodeGroup = Annotated[StrictStr, AfterValidator(_node_group)]
Env = Annotated[dict[str, str], BeforeValidator(_env)]
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Command = list[StrictStr]
Section = BeforeValidator(_none_as_empty)
