"""Kubernetes' ``$(VAR)`` expansion of a container's command, args and env values.

The rules are the kubelet's (``third_party/forked/golang/expansion``): ``$(VAR)`` becomes the
value of ``VAR`` when it is defined and stays as written otherwise; ``$$`` is an escaped ``$``, so
``$$(VAR)`` becomes a literal ``$(VAR)``; any other ``$`` is kept. No shell is involved, so
``$VAR`` and ``${VAR}`` are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand the ``$(VAR)`` references in ``text`` against ``env``.

    Args:
        text: One argument or env value.
        env: The variables that may be referenced.

    Returns:
        ``text`` with each ``$(VAR)`` of a defined ``VAR`` replaced and each ``$$`` made ``$``.
    """
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text) - 1:  # a "$" in the last position can start nothing
        if text[cursor] != "$":
            cursor += 1
            continue
        out.append(text[checkpoint:cursor])
        following = text[cursor + 1]
        if following == "$":
            out.append("$")
            cursor += 2
        elif following == "(" and (close := text.find(")", cursor + 2)) != -1:
            name = text[cursor + 2 : close]
            out.append(env.get(name, f"$({name})"))
            cursor = close + 1
        else:
            # "$x", or "$(" with no closing parenthesis: kept as written
            out.append(text[cursor : cursor + 2])
            cursor += 2
        checkpoint = cursor
    out.append(text[checkpoint:])
    return "".join(out)


def expand_env(values: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Expand a container's ``env`` values, in sorted key order, as Cortex renders them.

    Each value may reference ``env`` and the container's variables sorted before it (the kubelet
    lets an env var use those defined earlier in the list, and Cortex sorts the list).

    Args:
        values: The container's ``env`` as written.
        env: The variables defined before the container's own (the process environment, ``CORTEX_*``).

    Returns:
        The container's variables with their values expanded.
    """
    known = dict(env)
    expanded: dict[str, str] = {}
    for key in sorted(values):
        expanded[key] = known[key] = expand(values[key], known)
    return expanded
