"""Poison input: whatever bytes arrive on the topic, decoding either yields a valid
:class:`GenerationEvent` or raises :class:`InvalidEvent` with a reason a person can act on, and
the worker dead-letters the payload and keeps going.

* property-based fuzzing of :func:`decode_event` over more than 10,000 generated payloads,
  500 of them nested up to 3,000 deep somewhere in an otherwise valid event;
* named cases for every kind of bad input the contract names, and for bad images;
* end to end (``tests/integration/test_poison_payloads.py``): a real worker on the real broker
  dead-letters a mix of poison, including images that only the pipeline can reject, and still
  stores every good event exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from poison_payloads import (
    BAD_IMAGES,
    DROP,
    NAMED_REJECTS,
    b64,
    now,
    raw,
    real_png,
    valid_payload,
)

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from streams.dead_letter import MAX_RECORD_BYTES, DeadLetter
from streams.errors import InvalidEvent
from streams.events import (
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_CHARS,
    GenerationEvent,
    decode_event,
    encode_event,
)

# --------------------------------------------------------------------------- the property


def outcome(raw: bytes | str, max_bytes: int = MAX_PAYLOAD_BYTES) -> str:
    """Decode ``raw`` and check the contract; return "accepted" or "rejected".

    Anything but a GenerationEvent or an InvalidEvent escapes and fails the test. A reason
    must be non-empty and serialisable into a dead letter (it ends up in the DLQ and in the
    replay's reject file); an accepted event must survive the rest of the path."""
    try:
        event = decode_event(raw, max_bytes)
    except InvalidEvent as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip(), repr(exc.reason)
        exc.reason.encode("utf-8")  # no lone surrogates: it must go into UTF-8 records
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        record = DeadLetter.from_json(DeadLetter.of(data, exc.reason, "t", 0, 1).to_json())
        assert record.payload_bytes == len(data) and data.startswith(record.original())
        assert record.truncated or record.original() == data
        assert record.reason == exc.reason or len(exc.reason) > 4_000
        return "rejected"
    assert isinstance(event, GenerationEvent)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.prompt.text or event.output.text or event.output.image
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.attributes.items())
    assert decode_event(encode_event(event), max_bytes=2**40) == event
    return "accepted"


# --------------------------------------------------------------------------- strategies

ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates included
TEXT = st.text(ANY_CHAR, max_size=40)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
TIMESTAMPS = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.none() | st.just(UTC),
    ).map(lambda d: d.isoformat()),
    st.integers(min_value=-48, max_value=48).map(
        lambda h: (now() + timedelta(hours=h)).isoformat()
    ),
    st.sampled_from(
        [
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
            "2026-11-01T00:00:00+25:00",
            "2026-11-01 00:00:00Z",
            "2026-11-01T00:00:00.123456789Z",
            "1e10",
            "NaN",
        ]
    ),
    st.integers() | st.floats(),
    TEXT,
)
EDGE_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "\x00", "'; DROP TABLE events; --", "a" * 257, "a" * 513]),
    st.integers(min_value=0, max_value=600).map(lambda n: "x" * n),
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": EDGE_TEXT | JSON_VALUES,
    "timestamp": TIMESTAMPS,
    "model": EDGE_TEXT | JSON_VALUES,
    "model_version": EDGE_TEXT | JSON_VALUES,
    "prompt": st.fixed_dictionaries({}, optional={"text": EDGE_TEXT | JSON_VALUES, "x": TEXT})
    | JSON_VALUES,
    "output": st.fixed_dictionaries(
        {}, optional={"text": EDGE_TEXT | JSON_VALUES, "image": EDGE_TEXT | JSON_VALUES}
    )
    | JSON_VALUES,
    "app": EDGE_TEXT | JSON_VALUES,
    "release": EDGE_TEXT | JSON_VALUES,
    "latency_ms": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | JSON_VALUES,
    "feedback": st.integers(min_value=-3, max_value=3) | st.floats() | JSON_VALUES,
    "attributes": st.dictionaries(TEXT, TEXT | JSON_VALUES, max_size=4) | JSON_VALUES,
}


@st.composite
def near_valid_events(draw: st.DrawFn) -> bytes:
    """A valid event with one to four fields dropped, replaced or added."""
    data = valid_payload(
        event_id=draw(st.text(ANY_CHAR, min_size=1, max_size=20)),
        timestamp=(now() - timedelta(seconds=draw(st.integers(0, 10**6)))).isoformat(),
    )
    for field in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, max_size=4)):
        action = draw(st.sampled_from(["drop", "replace", "replace", "replace"]))
        if action == "drop":
            data.pop(field, None)
        else:
            data[field] = draw(FIELD_VALUES[field])
    for key, value in draw(st.dictionaries(TEXT, JSON_VALUES, max_size=2)).items():
        data[key] = value  # unknown fields go to attributes, or clash with known ones
    text = json.dumps(data, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


@st.composite
def deeply_nested_events(draw: st.DrawFn) -> bytes:
    """A valid event with a value nested 0 to 3,000 deep (lists, objects or both, closed or
    cut short) in a field, an attribute, an unknown field or the carried embeddings."""
    depth = draw(st.integers(0, 3_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}"), ('[{"a": ', "}]")]))
    value = opener * depth + "1" + (closer * depth if draw(st.integers(0, 9)) else "")
    where = draw(st.sampled_from(['"x": ', '"attributes": {"k": ', '"prompt": {"text": ',
                                  '"output": ', '"embeddings": ', '"latency_ms": ']))  # fmt: skip
    tail = "}" if where.count("{") else ""
    head = json.dumps(valid_payload(attributes=DROP) if "attributes" in where else
                      valid_payload())[:-1]  # fmt: skip
    return f"{head}, {where}{value}{tail}}}".encode()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a valid event with bytes overwritten, inserted or deleted."""
    raw = bytearray(json.dumps(valid_payload(attributes={"k": "v"})).encode())
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.integers(0, 255) | st.sampled_from(list(b'{}[]",:\\0-eE.')))
        if op == "insert" or position == len(raw):
            raw.insert(position, byte)
        elif op == "set":
            raw[position] = byte
        else:
            del raw[position]
    return bytes(raw)


FUZZ = settings(
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
N_BYTES, N_JSON, N_NEAR, N_MUTATED, N_DEEP = 2_500, 2_500, 4_000, 1_500, 500


def run_property(strategy: st.SearchStrategy[Any], n: int) -> Counter[str]:
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=n)
    @given(strategy)
    def check(raw: bytes | str) -> None:
        seen[outcome(raw)] += 1

    check()
    assert sum(seen.values()) >= n, seen  # every requested example was really tried
    print(f"{sum(seen.values())} payloads: {dict(seen)}")
    return seen


def test_fuzz_arbitrary_bytes() -> None:
    run_property(st.binary(max_size=512) | st.text(ANY_CHAR, max_size=200), N_BYTES)


def test_fuzz_arbitrary_json_values() -> None:
    seen = run_property(
        JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")),
        N_JSON,
    )
    assert seen["rejected"] == sum(seen.values())  # none of these is an event


def test_fuzz_near_valid_events() -> None:
    seen = run_property(near_valid_events(), N_NEAR)
    assert seen["accepted"] > 0 and seen["rejected"] > 0  # the strategy reaches both sides


def test_fuzz_deeply_nested_events() -> None:
    seen = run_property(deeply_nested_events(), N_DEEP)
    assert seen["accepted"] > 0 and seen["rejected"] > 0


def test_fuzz_mutated_bytes_of_a_valid_event() -> None:
    seen = run_property(mutated_bytes(), N_MUTATED)
    assert seen["rejected"] > 0


# --------------------------------------------------------------------------- named cases


@pytest.mark.parametrize(
    ("payload", "reason"),
    [pytest.param(p, r, id=name) for name, p, r in NAMED_REJECTS],
)
def test_named_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    assert outcome(payload) == "rejected"
    with pytest.raises(InvalidEvent) as info:
        decode_event(payload)
    assert reason in info.value.reason
    assert len(info.value.reason) < 2_000  # a reason names the problem, it does not echo input


def test_payload_size_limit_is_configurable_and_checked_before_parsing() -> None:
    small = raw(output={"text": "x" * 2_000})
    assert outcome(small, max_bytes=4_096) == "accepted"
    with pytest.raises(InvalidEvent, match="exceeds the limit of 1024 bytes"):
        decode_event(small, max_bytes=1_024)
    too_big = b"[" * (MAX_PAYLOAD_BYTES + 1)  # would be a RecursionError if it were parsed
    with pytest.raises(InvalidEvent, match=f"limit of {MAX_PAYLOAD_BYTES} bytes"):
        decode_event(too_big)
    with pytest.raises(InvalidEvent, match="exceeds"):
        decode_event(small.decode(), max_bytes=1_024)  # str input is measured in UTF-8 bytes


def test_edge_values_that_are_valid_are_accepted() -> None:
    for payload in (
        raw(output={"text": "x" * MAX_TEXT_CHARS}),
        raw(event_id="e" * 256, model="m" * 512),
        raw(timestamp="2000-01-01T00:00:00Z"),
        raw(timestamp=(now() + timedelta(hours=23)).isoformat()),
        raw(timestamp="2026-11-01T10:00:00+14:00"),
        # Unix time is accepted too (pydantic's lax datetime: seconds, or milliseconds above
        # 2e10), beyond the contract's RFC 3339; logs replayed with a field mapping rely on it.
        raw(output={"text": "NUL \x00, bell \x07, RTL \u202e, emoji \U0001f600"}),
        raw(feedback=-1, latency_ms=0),
        raw(prompt=DROP, output={"image": "https://example.com/a.png"}),
    ):
        assert outcome(payload) == "accepted", payload[:200]


def test_dead_letters_fit_one_kafka_request_and_old_records_still_read() -> None:
    for payload in (b"x" * 2_000_000, b"\x00" * 400_000, bytes(range(256)) * 4_000, b"{}"):
        letter = DeadLetter.of(payload, "r" * 50_000, "generations", 2, 7)
        assert len(letter.to_json()) <= MAX_RECORD_BYTES
        assert letter.payload_bytes == len(payload) and payload.startswith(letter.original())
        assert letter.truncated == (letter.original() != payload)
        assert len(letter.reason) < 4_100
        assert DeadLetter.from_json(letter.to_json()) == letter
    old = b'{"reason": "r", "payload": "p", "payload_encoding": "utf-8", "topic": "t",'
    old += b' "partition": 0, "offset": 1, "failed_at": "2026-11-01T00:00:00+00:00"}'
    assert DeadLetter.from_json(old).original() == b"p"


# --------------------------------------------------------------------------- bad images


@pytest.mark.parametrize(
    ("ref", "reason"), [pytest.param(ref, r, id=name) for name, ref, r in BAD_IMAGES]
)
def test_bad_images_raise_image_error_quickly(ref: str, reason: str) -> None:
    policy = ImagePolicy(max_bytes=1_000_000)
    with pytest.raises(ImageError, match=reason):
        load_image(ref, policy)  # each reason names the check that stopped it before decoding
    assert len(ref) < 3_000_000  # every bomb here is small on the wire


def test_a_good_image_still_loads() -> None:
    assert load_image("data:image/png;base64," + b64(real_png())).size == (8, 8)
    assert load_image(b64(real_png(64))).size == (64, 64)


# --------------------------------------------------------------------------- end to end
