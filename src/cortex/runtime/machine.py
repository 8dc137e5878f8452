"""The runtime of a local cluster on this machine: processes only, or processes and pods on a container engine.

``--containers never`` runs processes only. Otherwise the engine is the one named by
``--container-engine``, or the first of Podman and Docker found; a named engine, or any with
``--containers always``, must work (``<engine> info``), or the cluster does not start, saying what
to set. An engine merely found that does not work (a Docker client without a daemon) is left
aside with a warning, and a deploy needing it is refused naming the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from cortex.backends import BackendUrls
from cortex.runtime.containers import ContainerRuntime
from cortex.runtime.engine import STATE_LABEL, EngineError, check_engine, find_engine, remove_labelled
from cortex.runtime.local import ClusterEnv, LocalRuntime, LocalSettings

log = logging.getLogger(__name__)

#: ``cortex cluster up --containers``
ContainersFlag = Literal["auto", "always", "never"]


async def machine_runtime(
    state_dir: Path,
    urls: BackendUrls,
    env: ClusterEnv,
    settings: LocalSettings,
    *,
    engine_name: str | None = None,
    containers: ContainersFlag = "auto",
) -> LocalRuntime:
    """The runtime for a cluster on ``state_dir``; pods a killed cluster on it left behind are removed first.

    Raises:
        EngineError: The engine asked for is missing or cannot start containers.
    """
    if containers == "never":
        return LocalRuntime(state_dir, urls, env, settings)
    engine = find_engine(engine_name)
    if engine is None:
        if containers == "always":
            raise EngineError("--containers always: no container engine found (install podman or docker)")
        runtime = LocalRuntime(state_dir, urls, env, settings)
        runtime.engine_problem = "no container engine (podman or docker) was found when the cluster started"
        return runtime
    try:
        await check_engine(engine)
    except EngineError as exc:
        if engine_name is not None or containers == "always":
            raise
        log.warning("%s; running containers with a command as processes only", exc)
        runtime = LocalRuntime(state_dir, urls, env, settings)
        runtime.engine_problem = str(exc)
        return runtime
    removed = await remove_labelled(engine, {STATE_LABEL: str(state_dir.resolve())})
    if removed:
        log.warning("removed %d pods and containers a killed cluster on %s left behind", removed, state_dir)
    log.info("container engine: %s (%s)", engine.name, engine.binary)
    return ContainerRuntime(state_dir, urls, env, engine, mode=containers, settings=settings)


async def remove_leftover_pods(state_dir: Path, engine_name: str | None = None) -> int:
    """Remove the pods and containers labelled with ``state_dir`` (``cortex cluster down`` after ``kill -9``).

    Returns 0 where no engine is installed, or where it does not answer (it then holds no container of ours).
    """
    engine = find_engine(engine_name)
    if engine is None:
        return 0
    try:
        return await remove_labelled(engine, {STATE_LABEL: str(state_dir.resolve())})
    except EngineError as exc:
        log.debug("no leftovers removed: %s", exc)
        return 0
