"""OTLP decoding: real SDK spans, real encoders, every convention, field by field."""

from __future__ import annotations

import json

import pytest
from otlp_spans import Expected, details_logs, genai_batch, to_json, to_proto

from streams.errors import InvalidEvent
from streams.events import GenerationEvent
from streams.otlp import OtlpMapping, decode_otlp, otlp_kind_of_topic


def check(event: GenerationEvent, want: Expected) -> None:
    assert event.model == want.model
    assert event.model_version == want.model_version
    assert event.app == want.app
    assert (event.prompt.text or "") == want.prompt
    assert (event.output.text or "") == want.output
    assert (event.output.image or "") == want.image
    assert (event.user_id or "") == want.user_id
    assert (event.session_id or "") == want.session_id
    assert event.attributes["otel.convention"] == want.convention
    for key, value in want.attributes.items():
        assert event.attributes[key] == value, key
    assert event.timestamp.tzinfo is not None
    assert event.latency_ms is not None and event.latency_ms >= 0


def by_span(events: list[GenerationEvent], batch_spans: list[object]) -> dict[str, GenerationEvent]:
    ids = {
        f"{s.context.trace_id:032x}-{s.context.span_id:016x}": s.name  # type: ignore[attr-defined]
        for s in batch_spans
    }
    return {ids[e.event_id]: e for e in events}


@pytest.mark.parametrize("encode", [to_proto, to_json], ids=["otlp_proto", "otlp_json"])
def test_every_convention_decodes_field_by_field(encode: object) -> None:
    batch = genai_batch()
    raw = encode(batch.spans)  # type: ignore[operator]
    decoded = decode_otlp(raw, "spans")
    assert decoded.encoding == ("otlp_json" if raw[:1] == b"{" else "otlp_proto")
    assert decoded.invalid == []
    assert sum(decoded.skipped.values()) == batch.skipped
    assert decoded.skipped["no gen_ai operation"] == 1
    assert decoded.skipped["gen_ai operation 'embeddings' is not a generation"] == 1
    events = by_span(decoded.events, batch.spans)
    assert set(events) == set(batch.expected)
    for name, want in batch.expected.items():
        check(events[name], want)
    # event id = trace id and span id: a redelivered export batch is the same events
    again = decode_otlp(raw, "spans")
    assert [e.event_id for e in again.events] == [e.event_id for e in decoded.events]


def test_proto_and_json_give_identical_events() -> None:
    batch = genai_batch()
    proto = decode_otlp(to_proto(batch.spans)).events
    as_json = decode_otlp(to_json(batch.spans)).events
    assert [e.model_dump() for e in proto] == [e.model_dump() for e in as_json]


def test_generation_without_content_is_kept_for_volume_and_latency() -> None:
    batch = genai_batch()
    events = by_span(decode_otlp(to_proto(batch.spans)).events, batch.spans)
    empty = events["chat gpt-4o-mini"]
    assert not (empty.prompt.text or empty.output.text or empty.output.image)
    assert empty.latency_ms is not None


@pytest.mark.parametrize("which", [0, 1], ids=["otlp_proto", "otlp_json"])
def test_inference_details_log_records(which: int) -> None:
    proto, as_json, want = details_logs()
    decoded = decode_otlp((proto, as_json)[which], "logs")
    assert decoded.skipped == {"no gen_ai operation": 1}
    (event,) = decoded.events
    assert event.model == want.model and event.model_version == want.model_version
    assert event.app == want.app
    assert event.prompt.text == want.prompt and event.output.text == want.output
    assert len(event.event_id) == 32 + 1 + 16  # inside a span: its trace and span id


def test_model_version_rule_is_configurable() -> None:
    batch = genai_batch()
    mapping = OtlpMapping(model_version_from=("deployment.sha", "service.version"))
    events = by_span(decode_otlp(to_proto(batch.spans), mapping=mapping).events, batch.spans)
    assert events["chat gpt-4o"].model_version == "2.3.0"  # service.version, from the resource
    nothing = OtlpMapping(model_version_from=("deployment.sha",), default_model_version="n/a")
    events = by_span(decode_otlp(to_proto(batch.spans), mapping=nothing).events, batch.spans)
    assert {e.model_version for e in events.values()} == {"n/a"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xff\xff\xff", b"{not json", b"[1, 2]", b'{"resourceLogs": []}',
     b'{"resourceSpans": {"not": "a list"}}', b'{"resourceSpans": [' * 200 + b"]}" * 200],
    ids=["empty", "garbage", "broken-json", "json-array", "logs-on-spans-topic", "wrong-shape",
         "nested-too-deep"],
)  # fmt: skip
def test_malformed_records_raise_with_a_reason(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_otlp(raw, "spans")
    assert "OTLP" in info.value.reason


def test_span_with_an_invalid_timestamp_is_reported_not_dropped() -> None:
    batch = genai_batch()
    document = json.loads(to_json(batch.spans))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["startTimeUnixNano"] = "0"
    decoded = decode_otlp(json.dumps(document).encode(), "spans")
    assert len(decoded.invalid) == 1
    what, why = decoded.invalid[0]
    assert spans[0]["name"] in what and "timestamp" in why
    assert len(decoded.events) == len(batch.expected) - 1


def test_topic_kind() -> None:
    assert otlp_kind_of_topic("otlp_logs") == "logs"
    assert otlp_kind_of_topic("otlp_spans") == "spans"


def test_an_empty_export_request_is_valid_and_holds_nothing() -> None:
    for raw in (b"{}", b'{"resourceSpans": []}'):
        decoded = decode_otlp(raw, "spans")
        assert decoded.events == [] and decoded.items == 0
