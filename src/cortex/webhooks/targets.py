"""Which webhook receivers may be called when a cluster refuses private addresses.

With ``--refuse-private-webhooks`` a receiver must resolve to public (globally routable) addresses
only: every address of its host is checked, and one loopback, private, link-local, shared,
multicast or reserved address refuses the whole host. The gateway checks ``X-Cortex-Webhook-URL``
when a request is submitted (a 400 says why); the dispatcher checks again at each delivery,
through :class:`PublicOnlyResolver`, which hands the connection only the addresses it checked, so
a name that resolves elsewhere between the two checks (DNS rebinding) still cannot reach inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: what a refusal says to do
HINT = "this cluster refuses webhooks to non-public addresses (cortex cluster up --refuse-private-webhooks)"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public(address: Address) -> bool:
    """Whether ``address`` is globally routable; an IPv6 form of an IPv4 address is judged by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def literal_problem(host: str) -> str | None:
    """Why the IP address ``host`` may not be called; None if it may, or if ``host`` is a name."""
    address = _literal(host)
    if address is None or is_public(address):
        return None
    return f"{host} is a private, loopback, link-local or otherwise non-public address; {HINT}"


def _refused(host: str, addresses: list[str]) -> str | None:
    for text in addresses:
        address = _literal(text)
        if address is None or not is_public(address):
            return f"{host} resolves to {text}, a private, loopback, link-local or otherwise non-public address; {HINT}"
    return None


async def url_problem(url: str) -> str | None:
    """Why ``url``'s host may not be called (it is or resolves to a non-public address); None if it may."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return f"{url[:100]!r} has no host"
    if _literal(host) is not None:
        return literal_problem(host)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"{host} does not resolve ({exc}); check the host name"
    if not infos:
        return f"{host} does not resolve; check the host name"
    return _refused(host, [str(info[4][0]) for info in infos])


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing a host any of whose addresses is not public.

    aiohttp connects to the addresses a resolver returns and does not resolve again, so what is
    checked here is what is connected to. IP literals never reach a resolver: check them with
    :func:`literal_problem` first.
    """

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host``; OSError (a connection error to aiohttp) if any is not public."""
        results = await self._inner.resolve(host, port, family)
        problem = _refused(host, [result["host"] for result in results])
        if problem is not None:
            raise OSError(problem)
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()
