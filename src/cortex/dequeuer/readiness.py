"""The readiness probes of one replica, from its API spec (reference §5.2)."""

from __future__ import annotations

from cortex.dequeuer.probes import ProbeConfig
from cortex.spec import ApiSpec


def probes_for(spec: ApiSpec, user_port: int) -> list[ProbeConfig]:
    """Every container's readiness probe, plus the TCP probe on ``pod.port`` that Cortex implies.

    A replica of the local runtime listens on its own ``user_port`` rather than ``pod.port``, so a
    probe aimed at ``pod.port`` is aimed at ``user_port`` instead. The implied probe is added
    unless some TCP probe already targets ``pod.port``.
    """
    pod_port = spec.pod.port
    probes: list[ProbeConfig] = []
    tcp_on_pod_port = False
    for container in spec.pod.containers:
        probe = container.readiness_probe
        if probe is None:
            continue
        target = probe.http_get or probe.tcp_socket
        if target is None:  # exec readiness is rejected by the spec; nothing to run
            continue
        tcp_on_pod_port |= probe.tcp_socket is not None and target.port == pod_port
        probes.append(
            ProbeConfig(
                name=f"{container.name}:readiness",
                kind="http_get" if probe.http_get is not None else "tcp_socket",
                port=user_port if target.port == pod_port else target.port,
                path=probe.http_get.path if probe.http_get is not None else "/",
                initial_delay=probe.initial_delay_seconds,
                timeout=probe.timeout_seconds,
                period=probe.period_seconds,
                success_threshold=probe.success_threshold,
                failure_threshold=probe.failure_threshold,
            )
        )
    if not tcp_on_pod_port:
        # Cortex's implied probe: a connect every second, thresholds 1/1, so a server that went
        # away stops the leasing within a second
        probes.append(
            ProbeConfig(name="implied-tcp", kind="tcp_socket", port=user_port, period=1.0, failure_threshold=1)
        )
    return probes
