"""Poison OTLP: whatever a Collector topic carries, :func:`decode_otlp` returns events, skips
and invalid items, or raises :class:`InvalidEvent` for the record; nothing else escapes.

Structured-random OTLP/JSON export requests (spans and log records) with hostile values at
every place the decoder reads: random nesting of AnyValues, wrong types, huge, NaN and
infinite numbers, Unicode digits, 64-bit integers as odd strings, message JSON nested
thousands deep inside strings; and random bytes for the protobuf path.

The number of examples is small in CI; a one-off run raises it with
``TELLTALE_FUZZ_OTLP_EXAMPLES`` (for example 5000).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.dead_letter import DeadLetter
from streams.errors import InvalidEvent
from streams.events import GenerationEvent
from streams.otlp import OtlpKind, decode_otlp

N_EXAMPLES = int(os.environ.get("TELLTALE_FUZZ_OTLP_EXAMPLES", "300"))
UNFORESEEN = "could not be decoded: "  # the decoder's reason for an error no check named

NOW_NS = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1e9)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five: enough sound spans get through to reach the deep code."""
    return st.integers(0, 4).flatmap(lambda i: bad if i == 0 else good)


# --------------------------------------------------------------------------- strategies

ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates included
TEXT = st.text(ANY_CHAR, max_size=20)
DIGITS = st.sampled_from(["0", "1", "²", "٣", "１", "x", "-1", "9" * 30, "9" * 5000, ""])
HUGE = st.sampled_from([10**30, -(10**30), 2**64, 2**63, -(2**63) - 1, 10**400])
NUMBERS = (
    st.integers()
    | HUGE
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["Infinity", "-Infinity", "NaN", "1e30", "1e400", "²", "0x10", " 1"])
    | st.just(str(NOW_NS))
    | st.integers(0, 2**64 - 1).map(str)
)


@st.composite
def deep_text(draw: st.DrawFn) -> str:
    """JSON-looking text nested 0 to 6,000 deep, closed or not."""
    depth = draw(st.integers(0, 6_000))
    opener = draw(st.sampled_from(["[", '{"a":', '[{"role": "user", "parts": ']))
    closer = {"[": "]", '{"a":': "}", '[{"role": "user", "parts": ': "}]"}[opener]
    closed = draw(st.booleans())
    return opener * depth + '"x"' + (closer * depth if closed else "")


MESSAGES = st.sampled_from([
    '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
    '[{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": 3}}]}]',
    '{"role": "user", "content": null}', "[1, 2]", "not json", '[{"parts": "x"}]',
    '[{"role": "user", "parts": [{"type": "blob", "mime_type": "image/png", "content": 1}]}]',
])  # fmt: skip
STRINGS = TEXT | deep_text() | MESSAGES | DIGITS | st.text(max_size=300)
SCALARS = st.none() | st.booleans() | NUMBERS | STRINGS


def any_values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """OTLP/JSON AnyValues, sometimes with the wrong type in their slot, nested at random."""
    return st.recursive(
        st.one_of(
            STRINGS.map(lambda v: {"stringValue": v}),
            NUMBERS.map(lambda v: {"intValue": v}),
            NUMBERS.map(lambda v: {"doubleValue": v}),
            SCALARS.map(lambda v: {"boolValue": v}),
            SCALARS.map(lambda v: {"bytesValue": v}),
            leaf.map(lambda v: {"stringValue": v}),
            st.just({}),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=3).map(lambda v: {"arrayValue": {"values": v}}),
            st.lists(st.tuples(KEYS, children), max_size=3).map(
                lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv]}}
            ),
            st.lists(children, max_size=2),  # a list where an AnyValue belongs
        ),
        max_leaves=8,
    )


@st.composite
def deep_any_value(draw: st.DrawFn) -> Any:
    """An AnyValue nested 0 to 120 levels deep (arrays or kvlists)."""
    value: Any = {"stringValue": "leaf"}
    for _ in range(draw(st.integers(0, 120))):
        if draw(st.booleans()):
            value = {"arrayValue": {"values": [value]}}
        else:
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


KEYS = st.one_of(
    st.sampled_from([
        "gen_ai.operation.name", "gen_ai.input.messages", "gen_ai.output.messages",
        "gen_ai.request.model", "gen_ai.response.model", "gen_ai.prompt", "gen_ai.completion",
        "openinference.span.kind", "llm.request.type", "input.value", "output.value",
        "gen_ai.response.image", "user.id", "session.id", "gen_ai.usage.input_tokens",
        "event.name", "service.version", "service.name",
    ]),
    st.tuples(st.sampled_from(["gen_ai.prompt", "gen_ai.completion"]), DIGITS,
              st.sampled_from(["content", "role"])).map(".".join),
    st.tuples(st.sampled_from(["llm.input_messages", "llm.output_messages"]), DIGITS,
              st.sampled_from(["message.content", "message.role",
                               "message.contents.0.message_content.text",
                               "message.contents.².message_content.text"])).map(".".join),
    TEXT,
)  # fmt: skip
SOUND = st.text(max_size=30).map(lambda v: {"stringValue": v}) | MESSAGES.map(
    lambda v: {"stringValue": v}
)
VALUES = mostly(SOUND, any_values(STRINGS) | deep_any_value() | SCALARS)


@st.composite
def attributes(draw: st.DrawFn) -> Any:
    pairs: list[Any] = [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]
    if draw(st.booleans()):
        pairs = []  # not a generation (or made one below)
    for key, value in draw(st.lists(st.tuples(KEYS, VALUES), max_size=5)):
        pairs.append({"key": key, "value": value})
    if draw(st.integers(0, 9)) == 0:
        pairs.append(draw(SCALARS | st.just({"value": {}})))  # not a KeyValue
    return pairs if draw(st.integers(0, 49)) else draw(SCALARS)


IDS = mostly(
    st.integers(1, 2**64).map(lambda i: f"{i:032x}"),
    st.sampled_from(["", "zz", "0" * 32, "²", "0x12"]) | SCALARS,
)


@st.composite
def span(draw: st.DrawFn, kind: OtlpKind) -> Any:
    item: dict[str, Any] = {
        "traceId": draw(IDS), "spanId": draw(IDS), "attributes": draw(attributes()),
    }  # fmt: skip
    times = ("startTimeUnixNano", "endTimeUnixNano") if kind == "spans" else (
        "timeUnixNano", "observedTimeUnixNano")  # fmt: skip
    for name in times:
        if draw(st.integers(0, 3)):
            item[name] = draw(mostly(st.just(str(NOW_NS)), NUMBERS))
    if kind == "spans":
        item["name"] = draw(TEXT | SCALARS)
        if draw(st.booleans()):
            item["events"] = draw(
                st.lists(st.fixed_dictionaries({"name": TEXT | SCALARS,
                                                "attributes": attributes()}), max_size=2)
                | SCALARS
            )  # fmt: skip
    else:
        item["eventName"] = draw(
            st.just("gen_ai.client.inference.operation.details") | TEXT | SCALARS
        )
        if draw(st.booleans()):
            item["body"] = draw(VALUES)
    return item if draw(st.integers(0, 49)) else draw(SCALARS)


@st.composite
def export_request(draw: st.DrawFn, kind: OtlpKind) -> bytes:
    outer, inner, leaf = (
        ("resourceSpans", "scopeSpans", "spans") if kind == "spans"
        else ("resourceLogs", "scopeLogs", "logRecords")
    )  # fmt: skip
    resources = []
    for _ in range(draw(st.integers(0, 2))):
        spans = draw(st.lists(span(kind), max_size=4))
        resource_attributes = draw(mostly(st.just([]), attributes()))
        resource = {"resource": {"attributes": resource_attributes}, inner: [{leaf: spans}]}
        resources.append(resource if draw(st.integers(0, 49)) else draw(SCALARS))
    document: Any = {outer: resources}
    if draw(st.integers(0, 49)) == 0:
        document = draw(SCALARS | st.just({outer: draw(SCALARS)}))
    text = json.dumps(document, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------- the property


def outcome(raw: bytes, kind: OtlpKind, seen: Counter[str]) -> None:
    """Decode ``raw``; only typed results may come out, and every reason must fit a dead
    letter (non-empty, UTF-8) and name the item it is about."""
    try:
        decoded = decode_otlp(raw, kind)
    except InvalidEvent as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip()
        exc.reason.encode("utf-8")
        DeadLetter.of(raw, exc.reason, "otlp_spans", 0, 1).to_json()
        seen["records rejected"] += 1
        return
    seen["records decoded"] += 1
    assert all(isinstance(e, GenerationEvent) for e in decoded.events)
    seen["events"] += len(decoded.events)
    seen["skipped"] += sum(decoded.skipped.values())
    for what, why in decoded.invalid:
        assert what.startswith(("span ", "log record ")) and "/" in what, what
        assert why.strip(), what
        (what + why).encode("utf-8")  # goes into a dead letter's reason
        seen["invalid items"] += 1
        seen["of which unforeseen"] += why.startswith(UNFORESEEN)


FUZZ = settings(
    deadline=None,
    database=None,
    max_examples=N_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)  # fmt: skip


def run(strategy: st.SearchStrategy[bytes], kind: OtlpKind) -> Counter[str]:
    seen: Counter[str] = Counter()
    inputs = [0]

    @FUZZ
    @given(strategy)
    def check(raw: bytes) -> None:
        inputs[0] += 1
        outcome(raw, kind, seen)

    check()
    print(f"{inputs[0]} OTLP {kind} inputs: {dict(seen)}")
    assert inputs[0] >= N_EXAMPLES
    return seen


def test_fuzz_otlp_json_spans() -> None:
    seen = run(export_request("spans"), "spans")
    assert seen["events"] and seen["invalid items"] and seen["records rejected"]


def test_fuzz_otlp_json_log_records() -> None:
    seen = run(export_request("logs"), "logs")
    assert seen["invalid items"] and seen["records rejected"]


def test_fuzz_otlp_protobuf_bytes() -> None:
    run(st.binary(max_size=512), "spans")
