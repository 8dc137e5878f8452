"""Liveness probes of the local runtime, with the kubelet's semantics.

The first check runs ``initial_delay_seconds`` after the container starts, then one every
``period_seconds`` (start to start); each check is bounded by ``timeout_seconds``. After
``failure_threshold`` consecutive failures the container is restarted. HTTP and TCP checks are the
dequeuer's readiness checks (:func:`cortex.dequeuer.probes.check_once`); an exec check runs the
command without a shell, in the container's directory and environment, and passes on exit 0.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from cortex.dequeuer.probes import ProbeConfig, check_once
from cortex.runtime.process import run_command
from cortex.spec import Probe


def local_port(port: int, *, pod_port: int, user_port: int) -> int:
    """The host port a probe or hook aimed at ``port`` reaches: ``pod.port`` is the replica's own port."""
    return user_port if port == pod_port else port


async def check_liveness(
    probe: Probe,
    *,
    name: str,
    session: aiohttp.ClientSession,
    ports: tuple[int, int],
    env: Mapping[str, str],
    cwd: Path,
) -> tuple[bool, str]:
    """Run one check of ``probe``; never raises, except when cancelled.

    Args:
        probe: The container's liveness probe.
        name: Names the probe in details, e.g. ``"api:liveness"``.
        session: The client for ``http_get`` checks.
        ports: ``(pod.port, the replica's port)``.
        env: The container's environment, for ``exec``.
        cwd: The container's directory, for ``exec``.

    Returns:
        ``(ok, detail)``.
    """
    if probe.exec is not None:
        code, output = await run_command(probe.exec.command, env=env, cwd=cwd, timeout=probe.timeout_seconds)
        if code == 0:
            return True, "exit code 0"
        return False, output if code is None else f"exit code {code}" + (f": {output}" if output else "")
    target = probe.http_get or probe.tcp_socket
    assert target is not None  # the spec requires exactly one handler
    config = ProbeConfig(
        name=name,
        kind="http_get" if probe.http_get is not None else "tcp_socket",
        port=local_port(target.port, pod_port=ports[0], user_port=ports[1]),
        path=probe.http_get.path if probe.http_get is not None else "/",
        timeout=probe.timeout_seconds,
    )
    return await check_once(config, session)


async def watch_liveness(probe: Probe, *, name: str, ports: tuple[int, int], env: Mapping[str, str], cwd: Path) -> str:
    """Check ``probe`` until it fails ``failure_threshold`` times in a row; runs until cancelled otherwise.

    Args:
        probe: The container's liveness probe.
        name: Names the probe in details.
        ports: ``(pod.port, the replica's port)``.
        env: The container's environment, for ``exec``.
        cwd: The container's directory, for ``exec``.

    Returns:
        Why the container is to be restarted, e.g. ``"3 failures in a row, last: exit code 1"``.
    """
    loop = asyncio.get_running_loop()
    failures = 0
    # A fresh connection per check, as the kubelet does: a pooled one would hide a server that stopped accepting.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        next_at = loop.time() + probe.initial_delay_seconds
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            ok, detail = await check_liveness(probe, name=name, session=session, ports=ports, env=env, cwd=cwd)
            failures = 0 if ok else failures + 1
            if failures >= probe.failure_threshold:
                return f"{failures} failure{'s' if failures > 1 else ''} in a row, last: {detail}"
            # Start to start; ticks a slow check overran are skipped.
            next_at += probe.period_seconds * max(1, math.ceil((loop.time() - next_at) / probe.period_seconds))
