"""One replica's pod on a container engine: its images pulled, the pod made before the containers start, removed after.

The images are pulled first (``ErrImagePull`` when one cannot be, as Kubernetes says, and the
replica tries again with backoff), then the pod is created with ``pod.port`` published on
127.0.0.1, where the dequeuer, a host process, reaches the user's server. Removing the pod
removes whatever of its containers is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from cortex.runtime.engine import Engine, EngineError, advice, run_engine
from cortex.runtime.plan import SandboxError

log = logging.getLogger(__name__)

#: how long one image pull may take
PULL_TIMEOUT = 1800.0
#: how long creating or removing a pod may take
POD_TIMEOUT = 60.0


class Pod:
    """A replica's pod: implements :class:`cortex.runtime.plan.Sandbox`.

    Args:
        engine: The container engine.
        name: The pod's name (unique on the machine).
        images: Every image its containers run.
        publish: Port in the pod -> port on 127.0.0.1.
        labels: The pod's labels (the cluster's state directory among them).
    """

    def __init__(
        self, engine: Engine, name: str, *, images: Sequence[str], publish: Mapping[int, int], labels: Mapping[str, str]
    ) -> None:
        self.engine = engine
        self.name = name
        self.images = tuple(dict.fromkeys(images))
        self.publish = dict(publish)
        self.labels = dict(labels)

    async def prepare(self, report: Callable[[str], None]) -> None:
        """Pull the images missing here, then create the pod (replacing a stale one of the same name)."""
        for image in self.images:
            await self._pull(image, report)
        report(f"creating pod {self.name}")
        await run_engine(self.engine.pod_remove(self.name), timeout=POD_TIMEOUT)
        argv = self.engine.pod_create(self.name, publish=self.publish, labels=self.labels, image=self.images[0])
        code, output = await run_engine(argv, timeout=POD_TIMEOUT)
        if code != 0:
            raise SandboxError(
                f"{self.engine.name} could not create pod {self.name}: {output}{advice(output)}",
                reason="FailedCreatePodSandBox",
            )
        report("starting the containers")

    async def remove(self) -> None:
        """Remove the pod and its containers; a failure is logged (the next cluster start removes it by label)."""
        try:
            code, output = await run_engine(self.engine.pod_remove(self.name), timeout=POD_TIMEOUT)
        except EngineError as exc:
            code, output = 1, str(exc)
        if code != 0:
            log.warning("%s: could not remove pod %s: %s", self.engine.name, self.name, output)

    async def _pull(self, image: str, report: Callable[[str], None]) -> None:
        code, _ = await run_engine(self.engine.image_exists(image), timeout=POD_TIMEOUT)
        if code == 0:
            return
        report(f"pulling image {image}")
        try:
            process = await asyncio.create_subprocess_exec(
                *self.engine.pull(image),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            message = f"could not run {self.engine.binary}: {exc.strerror or exc}"
            raise SandboxError(message, reason="ErrImagePull") from exc
        assert process.stdout is not None
        last = ""
        try:
            async with asyncio.timeout(PULL_TIMEOUT):
                async for raw in process.stdout:  # progress, one line a step: shown by describe and deploy --wait
                    if line := raw.decode("utf-8", errors="replace").strip():
                        last = line
                        report(f"pulling image {image}: {line}")
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SandboxError(f"pulling image {image} took over {PULL_TIMEOUT:g}s", reason="ErrImagePull") from None
        if process.returncode != 0:
            raise SandboxError(f"image {image} could not be pulled: {last}", reason="ErrImagePull")
