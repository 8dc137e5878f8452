"""API configuration: a YAML list of AsyncAPIs, validated into typed, immutable specs.

``load_file("cortex.yaml")`` returns one :class:`ApiSpec` per API with every default filled, or
raises :class:`~cortex.errors.SpecError` naming the file, the API and the field of each problem.
"""

from __future__ import annotations

from cortex.spec.container import Compute, Container, ExecAction, HttpGet, PreStop, Probe, TcpSocket
from cortex.spec.durations import format_duration, parse_cpu, parse_duration, parse_memory, parse_size
from cortex.spec.loader import load_file, load_text
from cortex.spec.models import ApiSpec, AsyncOptions, Autoscaling, Networking, Pod, Retry, UpdateStrategy, Webhook

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
