"""JSON from outside, with its nesting bounded: the one place every door parses through.

Python's ``json`` recurses once per level of nesting, and so do ``json.dumps``, pydantic and
the OTLP decoder after it: a value nested a few hundred levels deep parses, then raises
``RecursionError`` somewhere downstream (a 500 from the API, a replay that dies on the same
line on every rerun). So depth is bounded once, at parse time: :func:`parse_json` measures the
nesting of the raw text without recursing, before ``json.loads`` sees it, and
:func:`check_depth` measures an already-decoded value (a Parquet row, a mapping handed to
:func:`streams.events.validate_event`) the same way. Both raise
:class:`~streams.errors.JsonTooDeep`, an :class:`~streams.errors.InvalidEvent` whose reason
says what was refused.

>>> parse_json('{"a": [1, 2]}')
{'a': [1, 2]}
>>> parse_json("[" * 65 + "]" * 65)
Traceback (most recent call last):
...
streams.errors.JsonTooDeep: JSON nested deeper than 64 levels
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from streams.errors import JsonTooDeep

__all__ = ["MAX_JSON_DEPTH", "check_depth", "parse_json", "text_depth"]

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays accepted anywhere (``{"a": 1}`` is 1 deep).

An event's own structure is 2 deep (``output.text``); 64 leaves room for any honest payload
and keeps every recursive consumer far from Python's recursion limit (1,000 frames)."""

# A JSON string (escapes included, unrolled so the engine never backtracks), and what is
# anything that is not a bracket. Compiled for text and for bytes: json.loads takes both.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NOT_BRACKET_BYTES = re.compile(rb"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_STEP_BYTES = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_CONTAINERS = (dict, list, tuple)


def text_depth(raw: str | bytes) -> int:
    """The deepest nesting of brackets in ``raw`` outside strings, without recursion.

    Linear in the size of ``raw`` and mostly in C (two regular expressions, about 10 ns a
    character); brackets in an unterminated string count, which only matters for text that
    ``json.loads`` refuses anyway.

    >>> text_depth('{"a": "[[[", "b": [{}]}')
    3
    """
    if not _openers(raw):
        return 0
    if isinstance(raw, bytes):
        brackets_b = _NOT_BRACKET_BYTES.sub(b"", _STRING_BYTES.sub(b"", raw))
        return max(accumulate(map(_STEP_BYTES.__getitem__, brackets_b)), default=0)
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", raw))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _openers(raw: str | bytes) -> int:
    """How many ``[`` and ``{`` the text holds, strings included: a bound on its depth that
    costs two C scans (most payloads stop here)."""
    if isinstance(raw, bytes):
        return raw.count(b"[") + raw.count(b"{")
    return raw.count("[") + raw.count("{")


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`~streams.errors.JsonTooDeep` when a decoded value nests dicts, lists or
    tuples deeper than ``limit`` levels. Iterative (one level of containers at a time), and
    it stops at the first level too deep.

    >>> check_depth({"a": [[1]]}, limit=3)
    >>> check_depth({"a": [[1]]}, limit=2)
    Traceback (most recent call last):
    ...
    streams.errors.JsonTooDeep: JSON nested deeper than 2 levels
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise JsonTooDeep(limit)
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, _CONTAINERS)
        ]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: str | bytes, limit: int = MAX_JSON_DEPTH, *, finite: bool = False) -> Any:
    """``json.loads(raw)`` for input from outside: nesting beyond ``limit`` raises
    :class:`~streams.errors.JsonTooDeep` before any parsing (and so does a ``RecursionError``
    of the parser, should the caller's own stack already be deep); malformed JSON raises
    ``ValueError`` as ``json.loads`` does. ``finite`` refuses ``NaN`` and ``Infinity``, which
    the JSON grammar does not have (``json.loads`` takes them by default)."""
    if _openers(raw) > limit and text_depth(raw) > limit:  # few brackets: cannot be deep
        raise JsonTooDeep(limit)
    try:
        if finite:
            return json.loads(raw, parse_constant=_reject_constant)
        return json.loads(raw)
    except RecursionError as exc:
        raise JsonTooDeep(limit) from exc
