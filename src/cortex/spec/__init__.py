"""API configuration: a YAML list of AsyncAPIs, validated into typed, immutable specs.

``load_file("cortex.yaml")`` returns one :class:`ApiSpec` per API with every default filled, or
raises :class:`~cortex.errors.SpecError` naming the file, the API and the field of each problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cortex.spec.container import Compute, Container, ExecAction, HttpGet, PreStop, Probe, TcpSocket
from cortex.spec.durations import format_duration, parse_cpu, parse_duration, parse_memory, parse_size
from cortex.spec.models import ApiSpec, AsyncOptions, Autoscaling, Networking, Pod, Retry, UpdateStrategy, Webhook

if TYPE_CHECKING:
    from cortex.spec.loader import load_file, load_text

__all__ = [
    "ApiSpec",
    "AsyncOptions",
    "Autoscaling",
    "Compute",
    "Container",
    "ExecAction",
    "HttpGet",
    "Networking",
    "Pod",
    "PreStop",
    "Probe",
    "Retry",
    "TcpSocket",
    "UpdateStrategy",
    "Webhook",
    "format_duration",
    "load_file",
    "load_text",
    "parse_cpu",
    "parse_duration",
    "parse_memory",
    "parse_size",
]


def __getattr__(name: str) -> Any:
    """``load_file`` and ``load_text``, imported on first use.

    Reading YAML needs PyYAML (about 20 ms to import); a dequeuer, which starts with every replica
    and reads its spec from the catalog, never reads YAML (``docs/autoscaling.md``, waking from zero).
    """
    if name in ("load_file", "load_text"):
        from cortex.spec import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'cortex.spec' has no attribute {name!r}")
