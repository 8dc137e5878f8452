"""A container's ``pre_stop`` hook, run before it is sent SIGTERM (Kubernetes' preStop)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from cortex.runtime.liveness import local_port
from cortex.runtime.process import run_command
from cortex.spec import PreStop

log = logging.getLogger(__name__)


async def run_pre_stop(
    hook: PreStop, *, name: str, ports: tuple[int, int], env: Mapping[str, str], cwd: Path, timeout: float
) -> None:
    """Run ``hook`` to completion or until ``timeout``; a failure is logged, never raised.

    Args:
        hook: The container's ``pre_stop``: an HTTP GET on 127.0.0.1 or a command (no shell).
        name: The container's name, for logs.
        ports: ``(pod.port, the replica's port)``; a hook aimed at ``pod.port`` reaches the replica's port.
        env: The container's environment, for ``exec``.
        cwd: The container's directory, for ``exec``.
        timeout: Seconds the hook may take (the grace period).
    """
    if hook.exec is not None:
        code, output = await run_command(hook.exec.command, env=env, cwd=cwd, timeout=timeout)
        if code != 0:
            log.warning("%s: pre_stop command failed: %s", name, output if code is None else f"exit code {code}")
        return
    assert hook.http_get is not None  # the spec requires exactly one handler
    port = local_port(hook.http_get.port, pod_port=ports[0], user_port=ports[1])
    url = f"http://127.0.0.1:{port}{hook.http_get.path}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response,
        ):
            await response.read()
            if response.status >= 400:
                log.warning("%s: pre_stop GET %s answered %d", name, url, response.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("%s: pre_stop GET %s failed: %s", name, url, exc or type(exc).__name__)
