"""The Kubernetes version every test validates objects against, and the check itself (kubernetes-validate, offline).

Validation is ``--strict``: besides types and required fields, unknown fields are errors, which is what a real
API server does with ``fieldValidation=Strict`` (kubectl's default since 1.27 warns, the server rejects).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

#: the Kubernetes minor version whose OpenAPI schemas the emulator and the rendering tests check objects against
KUBERNETES_VERSION = "1.33"


def validation_error(obj: dict[str, Any]) -> str | None:
    """Why ``obj`` is not a valid object of its ``apiVersion``/``kind``, or None when it is.

    The message names the offending field as a dotted path (``spec.replicas: 'two' is not of type 'integer'``),
    or the object for errors at its root. A kind the schemas do not know is itself an error.
    """
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{field_path(error.path) or '<object>'}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return str(error.message)
    return None


def field_path(parts: Any) -> str:
    """A JSON path as Kubernetes spells it in messages: ``spec.template.spec.containers[0].image``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out
