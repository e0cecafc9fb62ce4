from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from streams.errors import InvalidEvent
from streams.events import GenerationEvent, decode_event, encode_event


def payload(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "timestamp": "2026-11-01T12:00:00+01:00",
        "model": "chat",
        "model_version": "v1",
        "prompt": {"text": "hello"},
        "output": {"text": "hi there"},
    }
    base.update(overrides)
    return base


def raw(**overrides: object) -> bytes:
    return json.dumps(payload(**overrides)).encode()


def test_valid_event_is_utc_and_round_trips() -> None:
    event = decode_event(raw(latency_ms=12.5, feedback=-1, app="web"))
    assert event.timestamp == datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert decode_event(encode_event(event)) == event


def test_unknown_fields_are_kept_in_attributes_without_mutating_input() -> None:
    data = payload(region="eu", tokens={"in": 3}, attributes={"team": "search"})
    before = json.dumps(data, sort_keys=True)
    event = GenerationEvent.model_validate(data)
    assert event.attributes == {"team": "search", "region": "eu", "tokens": '{"in": 3}'}
    assert json.dumps(data, sort_keys=True) == before


def test_otel_model_alias_is_accepted() -> None:
    data = payload()
    del data["model"]
    data["gen_ai.request.model"] = "gpt-x"
    assert decode_event(json.dumps(data)).model == "gpt-x"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (raw(latency_ms=None).replace(b"null", b"NaN"), "not valid JSON"),
        (raw(event_id=""), "event_id"),
        (raw(model=7), "model"),
        (raw(timestamp="2026-11-01T12:00:00"), "timestamp"),
        (raw(timestamp="1999-12-31T00:00:00Z"), "before 2000"),
        (raw(timestamp=(datetime.now(UTC) + timedelta(days=3)).isoformat()), "future"),
        (raw(prompt={}, output={}), "at least one of"),
        (raw(feedback=5), "feedback"),
        (raw(latency_ms=-3), "latency_ms"),
        (raw(output={"text": "x", "colour": "red"}), "output.colour"),
    ],
)
def test_invalid_payloads_raise_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(data)
    assert reason in info.value.reason


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="exceeds the limit"):
        decode_event(raw(output={"text": "x" * 5000}), max_bytes=1024)


def test_missing_required_fields_are_all_named() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(b'{"output": {"text": "x"}}')
    for name in ("event_id", "timestamp", "model", "model_version"):
        assert name in info.value.reason


def test_unix_number_timestamps_are_refused() -> None:
    with pytest.raises(InvalidEvent, match="RFC 3339"):
        decode_event(raw(timestamp=1_790_000_000))


def test_user_and_session_come_from_the_contract_or_from_otel_attributes() -> None:
    explicit = decode_event(raw(user_id="u-1", session_id="s-1"))
    assert (explicit.user_id, explicit.session_id) == ("u-1", "s-1")
    otel = decode_event(raw(**{"user.id": "u-2", "gen_ai.conversation.id": "c-9"}))
    assert (otel.user_id, otel.session_id) == ("u-2", "c-9")
    assert otel.attributes["user.id"] == "u-2"  # the original attribute is kept as sent
    nested = decode_event(raw(attributes={"session.id": "s-3"}))
    assert (nested.user_id, nested.session_id) == (None, "s-3")
    assert decode_event(raw()).user_id is None


def test_a_timestamp_before_year_one_in_utc_is_a_reason_not_a_crash() -> None:
    with pytest.raises(InvalidEvent, match="out of range"):
        decode_event(raw(timestamp="0001-01-01T00:00:00+01:00"))
