"""One scrape target for a whole local cluster: merge Prometheus texts, fetch them from peers.

The operator serves its own registry plus every replica dequeuer's admin ``/metrics``; the
gateway serves its own plus the operator's. Each dequeuer exposes the same families, so a plain
concatenation would repeat ``# HELP``/``# TYPE`` lines (which Prometheus rejects) and give several
replicas the same series: :func:`merge` parses every part, labels each part's samples (``replica``)
and writes each family once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

#: seconds a peer's ``/metrics`` may take before its part is left out of the scrape
FETCH_TIMEOUT = 1.0

#: one part of a merged exposition: its text and the labels added to each of its samples
Part = tuple[str, Mapping[str, str]]


class _Families:
    """A collector yielding already-built families (what :func:`merge` renders)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def merge(parts: Iterable[Part]) -> bytes:
    """The Prometheus text of every part's families, each family written once.

    A part that does not parse is left out (and logged); a family whose type differs from the
    same name's in an earlier part is left out of that part.
    """
    families: dict[str, Metric] = {}
    for text, labels in parts:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError as exc:
            log.warning("metrics: a peer's exposition does not parse; left out: %s", exc)
            continue
        for family in parsed:
            into = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            if into.type != family.type:
                continue
            into.samples.extend(s._replace(labels={**s.labels, **labels}) for s in family.samples)
    registry = CollectorRegistry()
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


async def fetch_all(urls: Mapping[str, str], *, timeout: float = FETCH_TIMEOUT) -> list[tuple[str, str]]:
    """``(key, text)`` of each URL that answered 200 within ``timeout`` seconds, fetched concurrently."""
    if not urls:
        return []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(key: str, url: str) -> tuple[str, str] | None:
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        return None
                    return key, await response.text()
            except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError):
                return None

        answers = await asyncio.gather(*(one(key, url) for key, url in urls.items()))
    return [answer for answer in answers if answer is not None]
