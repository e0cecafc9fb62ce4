"""OTLP decoding: real SDK spans, real encoders, every convention, field by field."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from otlp_spans import Expected, details_logs, genai_batch, to_json, to_proto

from streams._json import MAX_JSON_DEPTH
from streams.errors import InvalidEvent
from streams.events import GenerationEvent
from streams.otlp import OtlpConfig, decode_otlp, otlp_kind_of_topic
from streams.otlp.extract import INPUT_TOKEN_KEYS, OUTPUT_TOKEN_KEYS


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
    assert event.usage.model_dump(exclude_none=True) == want.usage
    assert not any(k in event.attributes for k in (*INPUT_TOKEN_KEYS, *OUTPUT_TOKEN_KEYS))
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
    mapping = OtlpConfig(model_version_from=("deployment.sha", "service.version"))
    events = by_span(decode_otlp(to_proto(batch.spans), mapping=mapping).events, batch.spans)
    assert events["chat gpt-4o"].model_version == "2.3.0"  # service.version, from the resource
    nothing = OtlpConfig(model_version_from=("deployment.sha",), default_model_version="n/a")
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


# -- hostile spans: one bad span is invalid on its own, named, and never loses the others ----

NOW_NS = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1e9)


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    return value  # already an AnyValue (a hostile one, in these tests)


def otlp_span(i: int, attrs: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A chat span in OTLP/JSON (indexed OpenLLMetry content), ``fields`` overriding."""
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                  "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": f"question {i}",
                  "gen_ai.completion.0.content": f"answer {i}", **(attrs or {})}  # fmt: skip
    return {"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"chat {i}",
            "startTimeUnixNano": str(NOW_NS), "endTimeUnixNano": str(NOW_NS + 10**9),
            "attributes": [{"key": k, "value": any_value(v)} for k, v in attributes.items()],
            **fields}  # fmt: skip


def export(*spans: dict[str, Any]) -> bytes:
    document = {"resourceSpans": [{"resource": {"attributes": []},
                                   "scopeSpans": [{"spans": list(spans)}]}]}  # fmt: skip
    return json.dumps(document, allow_nan=True).encode()


def as_proto(raw_json: bytes) -> bytes:
    """The same export request as ``otlp_proto`` (ids base64 in protobuf's JSON mapping)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    document = json.loads(raw_json)
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId"):
            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return bytes(json_format.ParseDict(document, ExportTraceServiceRequest()).SerializeToString())


BAD_SPANS: list[tuple[str, dict[str, Any], str]] = [
    ("messages nested 5,000 deep", {"attributes": [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.input.messages", "value": {"stringValue": "[" * 5000}}]},
     "gen_ai.input.messages: JSON nested deeper than 64 levels"),
    ("start time 10^30", {"startTimeUnixNano": 10**30}, "startTimeUnixNano"),
    ("start time 10^30 as text", {"startTimeUnixNano": str(10**30)}, "startTimeUnixNano"),
    ("start time Infinity", {"startTimeUnixNano": float("inf")}, "startTimeUnixNano"),
    ("start time 'Infinity'", {"startTimeUnixNano": "Infinity"}, "startTimeUnixNano"),
    ("start time NaN", {"startTimeUnixNano": float("nan")}, "startTimeUnixNano"),
    ("start time a Unicode digit", {"startTimeUnixNano": "²"}, "startTimeUnixNano"),
    ("end time 5,000 digits", {"endTimeUnixNano": "9" * 5000}, "endTimeUnixNano"),
    ("intValue a Unicode digit", {"attributes": [
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "²"}}]}, "intValue"),
    ("intValue Infinity", {"attributes": [
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": float("inf")}}]}, "intValue"),
    ("doubleValue 10^400", {"attributes": [
        {"key": "gen_ai.request.temperature", "value": {"doubleValue": 10**400}}]},
     "doubleValue"),
    ("boolValue a string", {"attributes": [
        {"key": "x", "value": {"boolValue": "false"}}]}, "boolValue"),
    ("span id not hex", {"spanId": "zz"}, "not hex"),
    ("events not a list", {"events": {"name": "x"}}, "expected a list of objects"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "reason"), [pytest.param(f, r, id=name) for name, f, r in BAD_SPANS]
)
def test_a_hostile_span_is_invalid_alone_and_named(fields: dict[str, Any], reason: str) -> None:
    """2 good spans and 1 bad one: 2 events, and 1 invalid item naming the bad span."""
    bad = otlp_span(1, **fields)
    decoded = decode_otlp(export(otlp_span(0), bad, otlp_span(2)), "spans")
    assert sorted(e.prompt.text or "" for e in decoded.events) == ["question 0", "question 2"]
    [(what, why)] = decoded.invalid
    assert reason in why, why
    assert "chat 1" in what and f"{2:016x}" in what, what  # the bad span, by name and span id
    if fields.get("spanId") is None:
        assert f"{2:032x}/{2:016x}" in what  # trace id / span id
    assert len(why) < 400  # a reason names the problem, it does not echo the input


@pytest.mark.parametrize("encode", [bytes, as_proto], ids=["otlp_json", "otlp_proto"])
def test_a_unicode_digit_index_is_not_a_message_index(encode: Any) -> None:
    # int("²") raises ValueError though "²".isdigit(): only ASCII digits index messages, and a
    # key that does not follow the convention is ignored like any other attribute.
    odd = otlp_span(1, {"gen_ai.prompt.².content": "superscript", "gen_ai.prompt.٣.content": "x",
                        f"gen_ai.completion.{'9' * 5000}.content": "huge index"})  # fmt: skip
    decoded = decode_otlp(encode(export(otlp_span(0), odd)), "spans")
    assert decoded.invalid == []
    assert sorted(e.prompt.text or "" for e in decoded.events) == ["question 0", "question 1"]
    assert sorted(e.output.text or "" for e in decoded.events) == ["answer 0", "answer 1"]


def test_deep_messages_in_protobuf_are_invalid_alone() -> None:
    bad = otlp_span(1, {"gen_ai.input.messages": "[" * 5000})
    decoded = decode_otlp(as_proto(export(otlp_span(0), bad, otlp_span(2))), "spans")
    assert len(decoded.events) == 2
    [(what, why)] = decoded.invalid
    assert f"{2:032x}/{2:016x}" in what and "deeper than 64 levels" in why


def test_a_deep_structured_attribute_is_invalid_alone() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(MAX_JSON_DEPTH + 1):  # each arrayValue level is one level of the value
        value = {"arrayValue": {"values": [value]}}
    bad = otlp_span(1, {"gen_ai.input.messages": value})
    decoded = decode_otlp(export(otlp_span(0), bad), "spans")
    assert len(decoded.events) == 1
    [(what, why)] = decoded.invalid
    assert "chat 1" in what and "gen_ai.input.messages" in why and "deeper than 64" in why


def test_a_resource_that_cannot_be_read_invalidates_its_spans_only() -> None:
    document = json.loads(export(otlp_span(0)))
    document["resourceSpans"][0]["resource"]["attributes"] = [
        {"key": "service.version", "value": {"intValue": "1e400"}}
    ]
    document["resourceSpans"].append(json.loads(export(otlp_span(1)))["resourceSpans"][0])
    decoded = decode_otlp(json.dumps(document).encode(), "spans")
    assert [e.prompt.text for e in decoded.events] == ["question 1"]
    [(what, why)] = decoded.invalid
    assert "chat 0" in what and why.startswith("resource: intValue")


def test_the_worker_stores_the_good_spans_and_dead_letters_the_bad_one() -> None:
    """The worker's OTLP decoder: PartlyInvalid carries the good events; its reason, which
    goes into the dead letter, names the bad span."""
    from streams.errors import PartlyInvalid
    from streams.worker import otlp_decoders

    decode = otlp_decoders(["otlp_spans"], OtlpConfig(), 1_000_000)["otlp_spans"]
    bad = otlp_span(1, startTimeUnixNano=10**30)
    with pytest.raises(PartlyInvalid) as info:
        decode(export(otlp_span(0), bad, otlp_span(2)))
    assert len(info.value.events) == 2
    assert f"1 of 3 OTLP items invalid: span 'chat 1' {2:032x}/{2:016x}" in info.value.reason


@pytest.mark.parametrize("encode", [bytes, as_proto], ids=["otlp_json", "otlp_proto"])
def test_token_attributes_become_usage_and_odd_values_stay_attributes(encode: Any) -> None:
    """Each convention's keys, in table order; a value that is not a count never rejects the
    span: it stays in ``attributes`` and the next key is tried."""
    spans = [
        otlp_span(0, {"gen_ai.usage.input_tokens": {"intValue": "31"},
                      "gen_ai.usage.output_tokens": {"intValue": "7"}}),
        otlp_span(1, {"gen_ai.usage.prompt_tokens": {"intValue": "12"},
                      "gen_ai.usage.completion_tokens": "3"}),  # decimal text counts too
        otlp_span(2, {"llm.token_count.prompt": {"intValue": "25"},
                      "llm.token_count.completion": {"intValue": "9"}}),
        otlp_span(3, {"gen_ai.usage.input_tokens": {"doubleValue": 1.5},
                      "gen_ai.usage.prompt_tokens": {"intValue": "4"},
                      "gen_ai.usage.output_tokens": {"intValue": "-2"},
                      "gen_ai.usage.completion_tokens": "many"}),
        otlp_span(4, {"gen_ai.usage.input_tokens": {"intValue": str(2**32)},
                      "gen_ai.usage.output_tokens": {"boolValue": True}}),
    ]  # fmt: skip
    decoded = decode_otlp(encode(export(*spans)), "spans")
    assert decoded.invalid == []
    events = {e.prompt.text: e for e in decoded.events}
    usage = {q: events[f"question {q}"].usage.model_dump() for q in range(5)}
    assert usage == {
        0: {"input_tokens": 31, "output_tokens": 7},
        1: {"input_tokens": 12, "output_tokens": 3},
        2: {"input_tokens": 25, "output_tokens": 9},
        3: {"input_tokens": 4, "output_tokens": None},
        4: {"input_tokens": None, "output_tokens": None},
    }
    kept = {q: {k: v for k, v in events[f"question {q}"].attributes.items()
                if k in (*INPUT_TOKEN_KEYS, *OUTPUT_TOKEN_KEYS)} for q in range(5)}  # fmt: skip
    assert kept[0] == kept[1] == kept[2] == {}
    assert kept[3] == {"gen_ai.usage.input_tokens": "1.5", "gen_ai.usage.output_tokens": "-2",
                       "gen_ai.usage.completion_tokens": "many"}  # fmt: skip
    assert kept[4] == {"gen_ai.usage.input_tokens": str(2**32),
                       "gen_ai.usage.output_tokens": "true"}  # fmt: skip
