"""Read a configuration file (a YAML list of APIs) into validated :class:`ApiSpec` objects.

Every problem becomes a :class:`~cortex.errors.SpecError` whose lines each name the file, the
API and the field, for example::

    cortex.yaml: api "hello" (#1): pod.port: must be <= 65535 (got 70000)
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cortex.errors import SpecError
from cortex.spec.fields import show
from cortex.spec.messages import describe_errors
from cortex.spec.models import ApiSpec

try:
    from yaml import CSafeLoader as _SafeLoader  # libyaml: many times faster, and it bounds the nesting depth
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _UniqueKeyLoader(_SafeLoader):
    """A SafeLoader that refuses duplicate keys, where PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'duplicate key "{key_node.value}"', key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def load_file(path: str | os.PathLike[str]) -> list[ApiSpec]:
    """Load and validate the APIs of a configuration file.

    Args:
        path: the YAML file; it is named as given in every error message.

    Returns:
        The APIs, in file order.

    Raises:
        SpecError: the file can't be read, isn't valid YAML, or an API is invalid.
    """
    return load_text(read_config(path), os.fspath(path))


def read_config(path: str | os.PathLike[str]) -> str:
    """The text of a configuration file.

    Raises:
        SpecError: the file is missing, a directory, unreadable or not UTF-8; the message names it.
    """
    source = os.fspath(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"{source}: file not found") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"{source}: is a directory, not a configuration file") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (invalid byte at offset {exc.start})") from exc
    except OSError as exc:
        raise SpecError(f"{source}: can't read the file: {exc.strerror or exc}") from exc


def load_text(text: str, source: str = "<string>") -> list[ApiSpec]:
    """Validate the APIs of a configuration given as text.

    Args:
        text: YAML: a list of APIs, each a mapping with at least ``name``, ``kind`` and ``pod``.
        source: what to call the text in error messages, usually the file name.

    Returns:
        The APIs, in order, with every default filled.

    Raises:
        SpecError: the text isn't valid YAML, isn't a non-empty list of mappings, an API is invalid,
            or two APIs share a name or an endpoint. All problems found are reported, one per line.
    """
    items = _api_list(_parse_yaml(text, source), source)
    lines: list[str] = []
    specs: list[tuple[str, ApiSpec]] = []
    for number, item in enumerate(items, start=1):
        label = _label(item, number)
        if not isinstance(item, dict):
            lines.append(f"{source}: {label}: must be a mapping with name, kind and pod (got {show(item)})")
            continue
        try:
            specs.append((label, ApiSpec.model_validate(item)))
        except ValidationError as exc:
            for path, message in describe_errors(exc, ApiSpec):
                lines.append(f"{source}: {label}: {path}: {message}" if path else f"{source}: {label}: {message}")
    lines.extend(_duplicates(specs, source))
    if lines:
        raise SpecError("\n".join(lines))
    return [spec for _, spec in specs]


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise SpecError(f"{source}: invalid YAML{where}: {problem}") from exc
    except yaml.reader.ReaderError as exc:  # a character YAML forbids (its str names no line)
        line = text.count("\n", 0, exc.position) + 1
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(f"{source}: invalid YAML at line {line}: {exc.reason} (U+{character:04X})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise SpecError(f"{source}: invalid YAML: nested too deeply") from exc


def _api_list(data: object, source: str) -> list[Any]:
    if data is None:
        raise SpecError(f'{source}: the file is empty; it must be a list of APIs, each starting with "- name: "')
    if isinstance(data, dict):
        raise SpecError(
            f'{source}: the top level must be a list of APIs, not a mapping; start each API with "- ", '
            'as in "- name: hello"'
        )
    if not isinstance(data, list):
        raise SpecError(f"{source}: the top level must be a list of APIs (got {show(data)})")
    if not data:
        raise SpecError(f"{source}: the list of APIs is empty; define at least one API")
    return data


def _label(item: object, number: int) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"api {show(name)} (#{number})" if isinstance(name, str) else f"api #{number}"


def _duplicates(specs: list[tuple[str, ApiSpec]], source: str) -> list[str]:
    """Lines for APIs that reuse an earlier API's name or endpoint; each names both APIs."""
    lines = []
    names: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    for label, spec in specs:
        if spec.name in names:
            # Same name implies the same default endpoint: one line is enough.
            lines.append(f'{source}: {label}: name: duplicate API name "{spec.name}" (also {names[spec.name]})')
            continue
        names[spec.name] = label
        endpoint = spec.networking.endpoint
        if endpoint in endpoints:
            lines.append(
                f'{source}: {label}: networking.endpoint: "{endpoint}" is already the endpoint of {endpoints[endpoint]}'
            )
        else:
            endpoints[endpoint] = label
    return lines
