"""A host of the test's own: a network namespace joined to this one by a veth pair, which the test can cut.

The namespace and both ends of the pair are made by the test and removed afterwards, even on
failure. The pair gets a /30 of its own in 10.213.0.0/16 (one not routed here already): the
address on this side ends in .1 (mod 4), the host's in .2. Traffic goes only between this
namespace and the host's, never anywhere else. :meth:`Host.cut` takes the host's end of the pair
down: packets to and from the host are dropped without a word, as on a network partition (no
reset, no "unreachable"), until :meth:`Host.heal`. Needs root and ``ip`` (Debian's iproute2):
without them the test skips, or fails under ``CI``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.servers.databases import CI


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"ip {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result


def require_root_and_ip() -> None:
    """Skip the test (fail it under ``CI``) unless it can make network namespaces."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        message = "network namespaces need root and ip (Debian's iproute2)"
        if CI:
            pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(message)


@dataclasses.dataclass
class Host:
    """A namespace reachable from this one at each of :attr:`addresses`, one per veth pair (link)."""

    name: str
    addresses: list[str]
    #: each pair's end inside the namespace
    inner: list[str]

    @property
    def address(self) -> str:
        """The address of the first link."""
        return self.addresses[0]

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self, link: int = 0) -> None:
        _ip("-n", self.name, "link", "set", self.inner[link], "down")

    def heal(self, link: int = 0) -> None:
        _ip("-n", self.name, "link", "set", self.inner[link], "up")


def _free_subnet() -> int:
    """A /30 in 10.213.0.0/16 that no route here covers, as ``third octet * 256 + its first address``."""
    routes = _ip("-4", "route", "show", "table", "all").stdout
    for _ in range(100):
        third, fourth = random.randrange(256), random.randrange(0, 256, 4)
        if f"10.213.{third}." not in routes:
            return third * 256 + fourth
    raise AssertionError("no free /30 in 10.213.0.0/16")


@contextlib.contextmanager
def host(links: int = 1) -> Iterator[Host]:
    """A namespace joined to this one by ``links`` veth pairs, each on a /30 of its own; removed afterwards."""
    require_root_and_ip()
    tag = secrets.token_hex(3)
    name = f"cortex-test-{tag}"
    made = Host(name, [], [])
    outer: list[str] = []
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for link in range(links):
            out, inner = f"cxo{tag}{link}", f"cxi{tag}{link}"
            third, fourth = divmod(_free_subnet(), 256)
            _ip("link", "add", out, "type", "veth", "peer", "name", inner, "netns", name)
            outer.append(out)
            _ip("addr", "add", f"10.213.{third}.{fourth + 1}/30", "dev", out)
            _ip("link", "set", out, "up")
            _ip("-n", name, "addr", "add", f"10.213.{third}.{fourth + 2}/30", "dev", inner)
            _ip("-n", name, "link", "set", inner, "up")
            made.addresses.append(f"10.213.{third}.{fourth + 2}")
            made.inner.append(inner)
        yield made
    finally:
        for out in outer:
            _ip("link", "del", out, check=False)  # removes both ends
        _ip("netns", "del", name, check=False)
