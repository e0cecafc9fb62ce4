"""Deep JSON at every door: nesting is bounded once, at parse time, and refused as an
``InvalidEvent`` (``JsonTooDeep``) with a reason, never a ``RecursionError`` further on.

Below a depth that depends on the caller's stack (about 950 here) ``json.loads`` parses, and
the code that walks the value next (``json.dumps`` of an unknown field inside validation)
can overflow; above it ``json.loads`` itself does, and 5,000 always does. Each door is tried
with every depth from 850 to 1,000, so the depth where only the second walk overflows is
always among them, wherever the caller's stack ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json, text_depth
from streams.errors import InvalidEvent, JsonTooDeep
from streams.events import decode_event, validate_event
from streams.feedback import decode_feedback, validate_feedback

DEEP = [*range(850, 1_001), 5_000]
REASON = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep (built without recursion)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def event(**extra: Any) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return {"event_id": "e1", "timestamp": at, "model": "m", "model_version": "v1",
            "output": {"text": "hi"}, **extra}  # fmt: skip


def event_text(unknown_depth: int) -> str:
    """An event whose unknown top-level field ``x`` makes the payload ``1 + unknown_depth``
    deep (the probe's case: unknown fields are JSON-encoded into ``attributes``)."""
    head = json.dumps(event())[:-1]
    return f'{head}, "x": {nested_text(unknown_depth)}}}'


def test_text_depth_counts_brackets_outside_strings() -> None:
    assert text_depth("1") == text_depth('"[[["') == 0
    assert text_depth('{"a": "]]]{{{", "b": [{"c": "\\"[["}]}') == 3
    assert text_depth(b'[[["\\\\"], "["]]') == 3
    assert text_depth("[" * 5000) == 5000  # unterminated: still measured, no recursion
    assert text_depth(nested_text(64)) == 64


@pytest.mark.parametrize("raw_type", [str, bytes])
def test_loads_accepts_64_levels_and_refuses_65(raw_type: type) -> None:
    def raw(depth: int) -> str | bytes:
        text = nested_text(depth)
        return text.encode() if raw_type is bytes else text

    assert parse_json(raw(MAX_JSON_DEPTH)) == nested(MAX_JSON_DEPTH)
    with pytest.raises(JsonTooDeep, match=REASON):
        parse_json(raw(MAX_JSON_DEPTH + 1))
    assert parse_json(raw(10), limit=10) == nested(10)
    with pytest.raises(JsonTooDeep, match="deeper than 9 levels"):
        parse_json(raw(10), limit=9)


def test_loads_refuses_what_json_loads_cannot_parse_at_all() -> None:
    for text in ("[" * 5000, '{"a": ' * 100_000, nested_text(100_000)):
        with pytest.raises(RecursionError):
            json.loads(text)  # what the doors called before
        with pytest.raises(JsonTooDeep, match=REASON) as info:
            parse_json(text)
        assert isinstance(info.value, InvalidEvent) and isinstance(info.value, ValueError)
        assert info.value.reason == REASON


def test_loads_still_reports_malformed_json_and_constants() -> None:
    with pytest.raises(ValueError, match="Expecting") as info:
        parse_json('{"a": [1, }')
    assert not isinstance(info.value, JsonTooDeep)
    assert parse_json("[NaN]")[0] != parse_json("[NaN]")[0]  # json.loads's default, kept
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        parse_json("[NaN]", finite=True)


def test_check_depth_of_decoded_values() -> None:
    check_depth(nested(MAX_JSON_DEPTH))
    check_depth({"a": ({"b": 1},)}, limit=3)
    check_depth("[[[[", limit=0)  # a string is a leaf, whatever it holds
    for value in (nested(MAX_JSON_DEPTH + 1), nested(100_000), {"a": nested(MAX_JSON_DEPTH)}):
        with pytest.raises(JsonTooDeep, match=REASON):
            check_depth(value)


def test_an_event_64_deep_is_accepted_and_65_refused() -> None:
    accepted = decode_event(event_text(MAX_JSON_DEPTH - 1))  # the event object is level 1
    assert json.loads(accepted.attributes["x"]) == nested(MAX_JSON_DEPTH - 1)
    with pytest.raises(JsonTooDeep, match=REASON):
        decode_event(event_text(MAX_JSON_DEPTH))
    assert validate_event(event(x=nested(MAX_JSON_DEPTH - 1))).attributes["x"]
    with pytest.raises(InvalidEvent, match=REASON):
        validate_event(event(x=nested(MAX_JSON_DEPTH)))


def test_deep_events_are_invalid_at_every_event_door() -> None:
    """decode_event (the worker, the Emitter's raw path) and validate_event (the HTTP API
    and replay, which parse first): the probe's 950-deep unknown field raised RecursionError
    from ``json.dumps`` inside validation."""
    doors = {
        "decode_event(str)": lambda depth: decode_event(event_text(depth)),
        "decode_event(bytes)": lambda depth: decode_event(event_text(depth).encode()),
        "validate_event, unknown field": lambda depth: validate_event(event(x=nested(depth))),
        "validate_event, attributes": lambda depth: validate_event(
            event(attributes={"k": nested(depth)})
        ),
    }
    for door, call in doors.items():
        for depth in DEEP:
            with pytest.raises(InvalidEvent) as info:
                call(depth)
            assert info.value.reason == REASON, (door, depth)


def test_deep_feedback_is_invalid() -> None:
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    head = json.dumps({"event_id": "e1", "value": 1, "timestamp": at})[:-1]
    for depth in DEEP:
        with pytest.raises(InvalidEvent) as info:
            decode_feedback(f'{head}, "comment": {nested_text(depth)}}}')
        assert info.value.reason == REASON, depth
        with pytest.raises(InvalidEvent) as info:
            validate_feedback({"event_id": "e1", "value": 1, "timestamp": at, "x": nested(depth)})
        assert info.value.reason == REASON, depth
