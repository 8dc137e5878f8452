"""Splitting a batch's body into its payloads (:mod:`cortex.gateway.batchbody`), as tables."""

from __future__ import annotations

import pytest

from cortex.gateway.batchbody import BatchProblem, ItemProblem, is_json_lines, split_batch


def split(body: bytes, *, json_lines: bool = False, max_items: int = 10, max_item_size: int = 100) -> object:
    return split_batch(body, json_lines=json_lines, max_items=max_items, max_item_size=max_item_size)


@pytest.mark.parametrize(
    ("body", "payloads"),
    [
        (b'[{"a": 1}, [1, 2] ,"s",null]', [b'{"a": 1}', b"[1, 2]", b'"s"', b"null"]),
        (b' \n[ {"x" :  "\xc3\xa9\\u00e9"} ]\r\n', ['{"x" :  "é\\u00e9"}'.encode()]),
        (b"[1e400, -0, 12345678901234567890]", [b"1e400", b"-0", b"12345678901234567890"]),
    ],
)
def test_an_array_keeps_each_payload_as_the_bytes_sent(body: bytes, payloads: list[bytes]) -> None:
    assert split(body) == payloads


@pytest.mark.parametrize(
    ("body", "payloads"),
    [
        (b'{"a": 1}\n[2]\n"three"\n', [b'{"a": 1}', b"[2]", b'"three"']),
        (b'{"a": 1}\r\n\r\n\n  {"b": 2}  ', [b'{"a": 1}', b'{"b": 2}']),  # blank lines are no payloads
    ],
)
def test_json_lines_hold_one_payload_per_line(body: bytes, payloads: list[bytes]) -> None:
    assert split(body, json_lines=True) == payloads


def test_bad_lines_are_each_named_by_index_and_line() -> None:
    body = b'{"ok": 1}\n\n{"bad": \n"fine"\nNaN\n{"a": 1} {"b": 2}\n' + b"[" + b"0," * 60 + b"0]\n"
    problem = split(body, json_lines=True)
    assert isinstance(problem, BatchProblem) and problem.status == 400
    assert "4 payloads of the batch are invalid" in problem.error
    assert [(item.index, item.line) for item in problem.items] == [(1, 3), (3, 5), (4, 6), (5, 7)]
    assert problem.items[0].error.startswith("not JSON")
    assert "NaN is not JSON" in problem.items[1].error
    assert "more than one JSON value" in problem.items[2].error
    assert "over the API's limit of 100" in problem.items[3].error
    assert problem.items[0].as_json() == {"index": 1, "line": 3, "error": problem.items[0].error}


def test_an_array_names_the_payload_where_it_stops_parsing() -> None:
    problem = split(b'[1, 2, {"a": }, 4]')
    assert isinstance(problem, BatchProblem) and problem.status == 400
    assert [item.index for item in problem.items] == [2]
    assert split(b"[1, 2 3]") == BatchProblem(
        400,
        "1 payload of the batch is invalid; nothing was stored",
        (ItemProblem(2, "expected ',' or ']' after the payload (character 7)"),),
    )


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_payload_nested_too_deeply_is_named_not_a_crash(json_lines: bool) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    problem = split(b"1\n" + deep if json_lines else b"[1, " + deep + b"]", json_lines=json_lines, max_item_size=10**6)
    assert isinstance(problem, BatchProblem)
    assert [(item.index, item.error) for item in problem.items] == [(1, "nested too deeply to parse")]


def test_an_oversized_payload_of_an_array_is_named() -> None:
    problem = split(b'[1, "' + b"x" * 200 + b'", 3]')
    assert isinstance(problem, BatchProblem)
    assert [(item.index, item.line) for item in problem.items] == [(1, None)]
    assert problem.items[0].as_json() == {"index": 1, "error": "the payload is 202 bytes, over the API's limit of 100"}


@pytest.mark.parametrize(
    ("body", "json_lines", "status", "error"),
    [
        (b"[]", False, 400, "holds no payload"),
        (b"\n \n", True, 400, "holds no payload"),
        (b'{"a": 1}', False, 400, "must be a JSON array"),
        (b"", False, 400, "must be a JSON array"),
        (b"[1] [2]", False, 400, "goes on after its JSON array"),
        (b"[" + b"1," * 10 + b"1]", False, 413, "at most 10 payloads"),
        (b"1\n" * 11, True, 413, "at most 10 payloads"),
        (b"[\xff]", False, 400, "not UTF-8"),
    ],
)
def test_a_batch_refused_whole(body: bytes, json_lines: bool, status: int, error: str) -> None:
    problem = split(body, json_lines=json_lines)
    assert isinstance(problem, BatchProblem)
    assert (problem.status, problem.items) == (status, ())
    assert error in problem.error


@pytest.mark.parametrize(
    ("content_type", "lines"),
    [
        (None, False),
        ("application/json", False),
        ("Application/JSON; charset=utf-8", False),
        ("application/vnd.batch+json", False),
        ("application/x-ndjson", True),
        ("application/jsonl", True),
        ("application/x-jsonlines; charset=utf-8", True),
        ("text/plain", None),
        ("application/octet-stream", None),
    ],
)
def test_the_content_type_says_array_or_lines(content_type: str | None, lines: bool | None) -> None:
    assert is_json_lines(content_type) is lines
