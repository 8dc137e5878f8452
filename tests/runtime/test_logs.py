"""Reading log files: the last lines of each, then appended lines and new files."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cortex.runtime.logs import read_logs, tail_offset


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (b"", 3, b""),
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc\n", 1, b"c\n"),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"\n\n\n", 2, b"\n\n"),
    ],
)
def test_tail_offset(tmp_path: Path, content: bytes, lines: int, expected: bytes) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(content)
    assert content[tail_offset(path, lines) :] == expected


def test_tail_offset_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"".join(b"line %06d %s\n" % (i, b"x" * 100) for i in range(5000)))
    start = tail_offset(path, 1234)
    tail = path.read_bytes()[start:].splitlines()
    assert len(tail) == 1234 and tail[0].startswith(b"line 003766 ")


async def test_read_logs_prefixes_tails_and_follows(tmp_path: Path) -> None:
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "api.log").write_bytes(b"one\ntwo\nthree\n")
    (tmp_path / "r1" / "dequeuer.log").write_bytes("héllo\r\nunfinished".encode())
    lines = [line async for line in read_logs(tmp_path, follow=False, tail=2)]
    assert lines == ["[r1 api] two", "[r1 api] three", "[r1 dequeuer] héllo", "[r1 dequeuer] unfinished"]
    assert [line async for line in read_logs(tmp_path / "missing", follow=False, tail=None)] == []

    async with contextlib.aclosing(read_logs(tmp_path, follow=True, tail=1)) as follow:
        assert await anext(follow) == "[r1 api] three"
        with (tmp_path / "r1" / "dequeuer.log").open("ab") as file:
            file.write(b" now\n")
        (tmp_path / "r2").mkdir()
        (tmp_path / "r2" / "api.log").write_bytes(b"new replica\n")
        async with asyncio.timeout(5):
            got = [await anext(follow), await anext(follow)]
    assert got == ["[r1 dequeuer] unfinished now", "[r2 api] new replica"]


async def test_one_requests_lines_across_gateway_dequeuer_and_container(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "echo" / "echo-1").mkdir(parents=True)
    (logs / "gateway.log").write_text('{"message": "could not queue request r1 of echo"}\nother\n')
    (logs / "echo" / "echo-1" / "dequeuer.log").write_text(
        '{"message": "processing request r1", "request_id": "r1"}\n{"message": "processing request r2"}\n'
    )
    (logs / "echo" / "echo-1" / "api.log").write_text("handling r1\nhandling r2\nr1 done\n")
    got = [
        line
        async for line in read_logs(
            logs / "echo", follow=False, tail=None, also=(logs / "gateway.log", logs / "absent.log"), mentioning="r1"
        )
    ]
    assert got == [
        '[gateway] {"message": "could not queue request r1 of echo"}',
        "[echo-1 api] handling r1",
        "[echo-1 api] r1 done",
        '[echo-1 dequeuer] {"message": "processing request r1", "request_id": "r1"}',
    ]
