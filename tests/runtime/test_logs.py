"""Reading log files: merged by time, the last lines overall, then appended lines and new files."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cortex.runtime.logs import Line, merge, read_logs, tail_offset
from cortex.runtime.stamp import parse, stamp, stamped

A, B, C = "[r1 api] ", "[r2 api] ", "[r1 dequeuer] "


@pytest.mark.parametrize(
    ("sources", "tail", "expected"),
    [
        ([], None, []),
        ([[(1, A + "a")], []], None, [A + "a"]),
        ([[(1, A + "a"), (3, A + "c")], [(2, B + "b"), (4, B + "d")]], None, [A + "a", B + "b", A + "c", B + "d"]),
        ([[(1, A + "a"), (3, A + "c")], [(2, B + "b"), (4, B + "d")]], 3, [B + "b", A + "c", B + "d"]),
        ([[(1, A + "a"), (3, A + "c")], [(2, B + "b"), (4, B + "d")]], 1, [B + "d"]),
        ([[(1, A + "a"), (3, A + "c")], [(2, B + "b"), (4, B + "d")]], 0, []),
        ([[(1, A + "a")], [(2, B + "b")]], 10, [A + "a", B + "b"]),
        # the same time: the order of the sources, then within each
        ([[(5, A + "x"), (5, A + "y")], [(5, B + "z")], [(1, C + "w")]], None, [C + "w", A + "x", A + "y", B + "z"]),
        ([[(5, A + "x"), (5, A + "y")], [(5, B + "z")]], 2, [A + "y", B + "z"]),
    ],
)
def test_merge_orders_by_time_and_tails_overall(
    sources: list[list[tuple[float, str]]], tail: int | None, expected: list[str]
) -> None:
    got = merge([[Line(*line) for line in source] for source in sources], tail)
    assert [line.text for line in got] == expected


@pytest.mark.parametrize(
    ("chunk", "at_line_start", "expected", "ends"),
    [
        (b"a\nb\n", True, b"S a\nS b\n", True),
        (b"a\nb", True, b"S a\nS b", False),
        (b"rest\nnext\n", False, b"rest\nS next\n", True),
        (b"more", False, b"more", False),
        (b"50%\r100%\n", True, b"S 50%\r100%\n", True),
    ],
)
def test_stamped_marks_each_line_start(chunk: bytes, at_line_start: bool, expected: bytes, ends: bool) -> None:
    out, ended = stamped(chunk, at_line_start, 1.25)
    assert (out.replace(stamp(1.25), b"S "), ended) == (expected, ends)


def test_stamps_read_back() -> None:
    assert stamp(1796590658.5) == b"2026-12-06T20:57:38.500000Z "
    assert parse("2026-12-06T20:57:38.500000Z hello") == (1796590658.5, "hello")
    assert parse("2026-12-06T20:57:38.123456789Z x")[1] == "x"  # Kubernetes' nanoseconds
    assert parse("2026-12-06T20:57:38Z x") == (1796590658.0, "x")
    assert parse("no stamp: 2026-12-06T20:57:38Z") == (None, "no stamp: 2026-12-06T20:57:38Z")


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
    lines = [line async for line in read_logs(tmp_path, follow=False, tail=3)]
    # no stamps: each file keeps its order, and files follow one another
    assert lines == ["[r1 api] three", "[r1 dequeuer] héllo", "[r1 dequeuer] unfinished"]
    assert [line async for line in read_logs(tmp_path / "missing", follow=False, tail=None)] == []

    async with contextlib.aclosing(read_logs(tmp_path, follow=True, tail=1)) as follow:
        assert await anext(follow) == "[r1 api] three"  # an unended line waits for its end
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


async def test_stamped_files_merge_in_time_order_and_tail_overall(tmp_path: Path) -> None:
    for replica, times in (("r1", (1, 3, 5)), ("r2", (2, 4, 6))):
        (tmp_path / replica).mkdir()
        (tmp_path / replica / "api.log").write_bytes(b"".join(stamp(t) + b"at %d\n" % t for t in times))
    (tmp_path / "r1" / "dequeuer.log").write_bytes(stamp(4.5) + b"between\nits continuation\n")
    got = [line async for line in read_logs(tmp_path, follow=False, tail=4)]
    assert got == ["[r1 dequeuer] between", "[r1 dequeuer] its continuation", "[r1 api] at 5", "[r2 api] at 6"]
    everything = [line async for line in read_logs(tmp_path, follow=False, tail=None)]
    assert everything[:4] == ["[r1 api] at 1", "[r2 api] at 2", "[r1 api] at 3", "[r2 api] at 4"]
    # one replica's (--random-pod): the tail counts its lines only
    one = [line async for line in read_logs(tmp_path, follow=False, tail=2, replica="r2")]
    assert one == ["[r2 api] at 4", "[r2 api] at 6"]
