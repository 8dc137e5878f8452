"""The events a stream sends per read: a start before its progress, progress before an end."""

from __future__ import annotations

import dataclasses

import pytest

from cortex.gateway.waiting import events_between
from cortex.requests import RequestRecord, Status

QUEUED = RequestRecord(id="01hqz0000000000000000000ab", api="a", status=Status.IN_QUEUE, created_at=1.0, expires_at=9.0)
STARTED = dataclasses.replace(QUEUED, status=Status.IN_PROGRESS, started_at=2.0, attempts=1)
HALF = dataclasses.replace(STARTED, progress={"step": 1}, progress_at=3.0)
MORE = dataclasses.replace(STARTED, progress={"step": 2}, progress_at=4.0)
DONE = dataclasses.replace(MORE, status=Status.COMPLETED, finished_at=5.0, result=b"1")


def kinds(events: list[bytes]) -> list[str]:
    return [event.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for event in events]


@pytest.mark.parametrize(
    ("shown", "now", "expected"),
    [
        (None, QUEUED, ["status"]),
        (QUEUED, QUEUED, []),
        (QUEUED, STARTED, ["status"]),
        (QUEUED, HALF, ["status", "progress"]),  # started and reported in one read: the start first
        (STARTED, HALF, ["progress"]),
        (HALF, HALF, []),
        (HALF, MORE, ["progress"]),
        (HALF, DONE, ["progress", "status"]),  # reported and ended in one read: the end last
        (MORE, DONE, ["status"]),  # the same progress: not sent again
        (None, DONE, ["progress", "status"]),  # opened after the end: the last progress, then the end
    ],
)
def test_events_between(shown: RequestRecord | None, now: RequestRecord, expected: list[str]) -> None:
    assert kinds(events_between(shown, now)) == expected


def test_a_progress_event_carries_the_value_on_one_line() -> None:
    (event,) = events_between(STARTED, dataclasses.replace(STARTED, progress={"text": "a\nb"}, progress_at=3.0))
    assert event == b'event: progress\ndata: {"text":"a\\nb"}\n\n'
