"""The body of ``POST /<endpoint>/batch``, split into its payloads: a JSON array, or JSON Lines.

Pure functions of the body's bytes and its ``Content-Type``. Each payload is kept as the bytes the
client sent for it (not parsed and dumped again), so a user server receives exactly what it would
have received had the payload been POSTed alone as ``application/json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, NoReturn

#: the media types of a JSON Lines body; anything else (or none) is a JSON array
JSON_LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})
#: the media types of a JSON array body
JSON_TYPES = frozenset({"application/json"})
#: item problems listed in one answer, at most (a body of 10,000 bad lines gets the first ones)
MAX_REPORTED = 100


@dataclasses.dataclass(frozen=True, slots=True)
class ItemProblem:
    """What is wrong with one payload of a batch: ``index`` counts payloads from 0 (blank lines are not payloads)."""

    index: int
    error: str
    #: the line of a JSON Lines body where the payload is (from 1); None for a JSON array
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"index": self.index, "error": self.error}
        if self.line is not None:
            shown["line"] = self.line
        return shown


@dataclasses.dataclass(frozen=True, slots=True)
class BatchProblem:
    """Why a batch is refused as a whole (``items`` empty) or for some of its payloads."""

    status: int
    error: str
    items: tuple[ItemProblem, ...] = ()


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, lower-cased, without parameters ("" when absent)."""
    return (content_type or "").partition(";")[0].strip().lower()


def is_json_lines(content_type: str | None) -> bool | None:
    """True for a JSON Lines body, False for a JSON array (the default, when no type is given), None otherwise."""
    kind = media_type(content_type)
    if kind in JSON_LINES_TYPES:
        return True
    if not kind or kind in JSON_TYPES or kind.endswith("+json"):
        return False
    return None


def split_batch(body: bytes, *, json_lines: bool, max_items: int, max_item_size: int) -> list[bytes] | BatchProblem:
    """The payloads of ``body`` in order, or why the batch is refused (nothing of it is to be stored).

    A payload must be one JSON value (``NaN`` and ``Infinity`` are not JSON) of at most
    ``max_item_size`` bytes; a batch holds 1 to ``max_items`` payloads.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BatchProblem(400, f"the body is not UTF-8 text (byte {exc.start}): a batch is JSON")
    split = _lines(text, max_items) if json_lines else _array(text, max_items)
    if isinstance(split, BatchProblem):
        return split
    items, problems = split
    if not problems and not items:
        return BatchProblem(400, "the batch holds no payload: send at least one")
    sized = [
        ItemProblem(index, f"the payload is {len(item)} bytes, over the API's limit of {max_item_size}", line)
        for item, index, line in items
        if len(item) > max_item_size
    ]
    problems = sorted([*problems, *sized], key=lambda problem: problem.index)
    if problems:
        bad = len(problems)
        return BatchProblem(
            400,
            f"{bad} payload{'' if bad == 1 else 's'} of the batch {'is' if bad == 1 else 'are'} invalid;"
            " nothing was stored",
            tuple(problems[:MAX_REPORTED]),
        )
    return [item for item, _, _ in items]


#: the payloads that parsed (each with its index, and its line in JSON Lines), and the problems of the others
_Split = tuple[list[tuple[bytes, int, int | None]], list[ItemProblem]]


def _too_many(max_items: int) -> BatchProblem:
    return BatchProblem(413, f"a batch holds at most {max_items} payloads; split it")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_BLANK = " \t\n\r"
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _lines(text: str, max_items: int) -> _Split | BatchProblem:
    """One payload per non-blank line."""
    items: list[tuple[bytes, int, int | None]] = []
    problems: list[ItemProblem] = []
    index = 0
    for number, line in enumerate(text.split("\n"), start=1):
        value = line.strip(_BLANK)
        if not value:
            continue
        if index == max_items:
            return _too_many(max_items)
        problem = _one_value(value)
        if problem is not None:
            problems.append(ItemProblem(index, problem, number))
        else:
            items.append((value.encode(), index, number))
        index += 1
    return items, problems


def _one_value(text: str) -> str | None:
    """What keeps ``text`` from being exactly one JSON value, or None."""
    try:
        _, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError) as exc:
        return _described(exc)
    if end != len(text):
        return f"more than one JSON value on the line (from column {end + 1})"
    return None


def _array(text: str, max_items: int) -> _Split | BatchProblem:
    """The elements of one JSON array; a syntax error in an element ends the reading there."""
    at = _skip(text, 0)
    if not text.startswith("[", at):
        return BatchProblem(400, "the body must be a JSON array of payloads (or JSON Lines, as application/x-ndjson)")
    items: list[tuple[bytes, int, int | None]] = []
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        return _after_array(text, at, items)
    while True:
        if len(items) == max_items:
            return _too_many(max_items)
        try:
            _, end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            return items, [ItemProblem(len(items), _described(exc))]
        items.append((text[at:end].encode(), len(items), None))
        at = _skip(text, end)
        if text.startswith("]", at):
            return _after_array(text, at, items)
        if not text.startswith(",", at):
            return items, [ItemProblem(len(items), f"expected ',' or ']' after the payload (character {at + 1})")]
        at = _skip(text, at + 1)


def _after_array(text: str, closing: int, items: list[tuple[bytes, int, int | None]]) -> _Split | BatchProblem:
    rest = _skip(text, closing + 1)
    if rest != len(text):
        return BatchProblem(400, f"the body goes on after its JSON array (character {rest + 1})")
    return items, []


def _skip(text: str, at: int) -> int:
    """The index of the first character at or after ``at`` that is not JSON whitespace."""
    match = _WHITESPACE.match(text, at)
    return at if match is None else match.end()


def _described(exc: ValueError | RecursionError) -> str:
    """The decoder's message, without the position it counts in the whole body (the index says where)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg}"
    if isinstance(exc, RecursionError):  # Python's decoder recurses once per level of nesting
        return "nested too deeply to parse"
    return f"not JSON: {exc}"
