"""The test images, built locally without any registry and cached between runs.

A Python base is made with ``mmdebstrap`` (Debian's packages, from Debian's registry) and loaded
with ``podman import``; the test servers are then ``podman build``-t on it. The base's tarball is
kept in ``$CORTEX_IMAGE_CACHE`` (default ``/var/cache/cortex-async``) and every image is tagged by a
hash of its inputs, so a second run builds nothing. ``.ci/run`` builds them before the tests
(``python -m tests.containers.images``); the session fixture only builds what is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
#: the base: Debian's Python with pip, pip allowed to install into it (as in python:3-slim)
MMDEBSTRAP = (
    "mmdebstrap",
    "--variant=essential",
    "--include=python3,python3-pip,ca-certificates",
    '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    "bookworm",
)
#: the images the tests run, by name: the folder holding its Containerfile, and extra files copied in
IMAGES = {
    "hello-world": (HERE / "hello_world", ()),
    "user-server": (HERE / "user_server", (HERE.parent / "runtime" / "user_server.py",)),
    "word-count": (HERE.parents[1] / "examples" / "word-count-container", ()),
}
REPOSITORY = "localhost/cortex-async-test"
#: the CA bundle of this machine: the build reaches PyPI through it (a proxy may sign with its own CA)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def missing_tools() -> list[str]:
    """The programs these images need that are not installed (empty: the tests can build and run them)."""
    return [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]


def cache_dir() -> Path:
    return Path(os.environ.get("CORTEX_IMAGE_CACHE", "/var/cache/cortex-async"))


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def _exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def base_image() -> str:
    """The base's tag, importing the cached tarball or making it first."""
    tag = f"{REPOSITORY}/base:{_digest(*(part.encode() for part in MMDEBSTRAP))}"
    if _exists(tag):
        return tag
    tarball = cache_dir() / f"base-{tag.rsplit(':', 1)[1]}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")  # mmdebstrap picks its output format by the suffix
        subprocess.run([*MMDEBSTRAP, str(partial)], check=True, stdout=subprocess.DEVNULL)
        partial.replace(tarball)
    subprocess.run(["podman", "import", str(tarball), tag], check=True, stdout=subprocess.DEVNULL)
    return tag


def image(name: str, also: str | None = None) -> str:
    """The tag of test image ``name`` (also tagged ``:latest``, and ``also``), built on the base if missing."""
    folder, extras = IMAGES[name]
    base = base_image()
    files = sorted([*(f for f in folder.iterdir() if f.is_file()), *extras])
    tag = f"{REPOSITORY}/{name}:{_digest(base.encode(), *(f.name.encode() + f.read_bytes() for f in files))}"
    if not _exists(tag):
        context = cache_dir() / "context" / name
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        for file in files:
            shutil.copy(file, context / file.name)
        argv = ["podman", "build", "--quiet", "--build-arg", f"BASE={base}", "--tag", tag]
        # pip reaches PyPI, and nothing else this machine cannot reach anyway
        argv += ["--network", "host"]
        if CA_BUNDLE.exists():
            argv += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        subprocess.run([*argv, str(context)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["podman", "tag", tag, f"{REPOSITORY}/{name}:latest", *([also] if also else [])], check=True)
    return tag


def main() -> None:
    for name in IMAGES:
        started = time.monotonic()
        tag = image(name)
        print(f"{tag}: ready in {time.monotonic() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
