"""Poison input: whatever bytes arrive on the topic, decoding either yields a valid
:class:`GenerationEvent` or raises :class:`InvalidEvent` with a reason a person can act on, and
the worker dead-letters the payload and keeps going.

* property-based fuzzing of :func:`decode_event` over more than 10,000 generated payloads,
  500 of them nested up to 3,000 deep somewhere in an otherwise valid event;
* named cases for every kind of bad input the contract names, and for bad images;
* end to end: a real worker on the real broker dead-letters a mix of poison, including images
  that only the pipeline can reject, and still stores every good event exactly once.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from signals.open_clip_embedder import OpenClipEmbedder
from streams.dead_letter import MAX_RECORD_BYTES, DeadLetter
from streams.emitter import Emitter
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


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def valid_payload(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "timestamp": (now() - timedelta(minutes=5)).isoformat(),
        "model": "chat",
        "model_version": "v1",
        "prompt": {"text": "hello"},
        "output": {"text": "hi there"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()

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


def raw(**overrides: Any) -> bytes:
    return json.dumps(valid_payload(**overrides)).encode()


NAMED_REJECTS: list[tuple[str, bytes, str]] = [
    ("invalid JSON", b'{"event_id": "e-1", ', "not valid JSON"),
    ("empty payload", b"", "not valid JSON"),
    ("invalid UTF-8", b'{"event_id": "\xff\xfe"}', "not valid UTF-8"),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + raw(), "not valid JSON"),
    ("JSON array", b"[1, 2]", "must be a JSON object"),
    ("JSON string", b'"event"', "must be a JSON object"),
    ("JSON null", b"null", "must be a JSON object"),
    ("missing event_id", raw(event_id=DROP), "event_id: Field required"),
    ("missing timestamp", raw(timestamp=DROP), "timestamp: Field required"),
    ("Unix seconds timestamp", raw(timestamp=1_790_000_000), "RFC 3339"),
    ("Unix milliseconds timestamp", raw(timestamp=1_790_000_000_000.0), "RFC 3339"),
    ("missing model", raw(model=DROP), "model: Field required"),
    ("missing model_version", raw(model_version=DROP), "model_version: Field required"),
    ("no content", raw(prompt=DROP, output=DROP), "at least one of"),
    ("empty content", raw(prompt={"text": ""}, output={}), "at least one of"),
    ("event_id a number", raw(event_id=42), "event_id"),
    ("empty event_id", raw(event_id=""), "event_id"),
    ("event_id too long", raw(event_id="e" * 257), "event_id"),
    ("model a list", raw(model=["chat"]), "model"),
    ("prompt a string", raw(prompt="hello"), "prompt"),
    ("prompt.text a number", raw(prompt={"text": 3}), "prompt.text"),
    ("unknown field in output", raw(output={"text": "t", "audio": "x"}), "output.audio"),
    ("attributes a list", raw(attributes=["a"]), "attributes"),
    ("attribute value a number", raw(attributes={"a": 1}), "attributes.a"),
    ("feedback out of range", raw(feedback=9), "feedback"),
    ("latency a string", raw(latency_ms="slow"), "latency_ms"),
    ("negative latency", raw(latency_ms=-1), "latency_ms"),
    ("NaN", raw().replace(b'"model": "chat"', b'"model": "chat", "latency_ms": NaN'), "NaN"),
    ("Infinity", raw()[:-1] + b', "latency_ms": Infinity}', "Infinity"),
    ("-Infinity", raw()[:-1] + b', "latency_ms": -Infinity}', "-Infinity"),
    ("1e400 overflows to infinity", raw()[:-1] + b', "latency_ms": 1e400}', "latency_ms"),
    ("integer of 5,000 digits", raw()[:-1] + b', "latency_ms": ' + b"9" * 5000 + b"}", "JSON"),
    ("nested 100,000 deep", b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "deeper than 64"),
    ("timestamp not a time", raw(timestamp="yesterday"), "timestamp"),
    ("timestamp without offset", raw(timestamp="2026-11-01T10:00:00"), "timestamp"),
    ("timestamp 1970", raw(timestamp="1970-01-01T00:00:00Z"), "before 2000-01-01"),
    ("timestamp year 1", raw(timestamp="0001-01-01T00:00:00Z"), "before 2000-01-01"),
    ("timestamp year 9999", raw(timestamp="9999-12-31T23:59:59Z"), "in the future"),
    (
        "timestamp two days ahead",
        raw(timestamp=(now() + timedelta(days=2)).isoformat()),
        "in the future",
    ),
    ("timestamp a boolean", raw(timestamp=True), "timestamp"),
    ("huge text", raw(output={"text": "x" * (MAX_TEXT_CHARS + 1)}), "200000 characters"),
    ("huge attribute key", raw(attributes={"k" * (MAX_TEXT_CHARS + 1): "v"}), "200000"),
    ("lone surrogate in a value", raw(output={"text": "a\ud800b"}), "output.text"),
    ("lone surrogate in a key", raw(attributes={"k\udfff": "v"}), "attributes"),
    ("lone surrogate in an unknown field", raw(**{"x\ud800": 1}), "attributes"),
]


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


def png(width: int, height: int, idat: bytes | None = None, pad: int = 0) -> bytes:
    """A PNG that *declares* ``width`` x ``height`` (8-bit RGB) with little or no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header)
    if pad:
        body += chunk(b"tEXt", b"comment\x00" + b"p" * pad)
    body += chunk(b"IDAT", zlib.compress(b"\x00" * 64) if idat is None else idat)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def real_png(size: int = 8) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    noise = bytes((i * 7919) % 251 for i in range(size * size * 3))  # incompressible enough
    Image.frombytes("RGB", (size, size), noise).save(out, format="PNG")
    return out.getvalue()


BAD_IMAGES: list[tuple[str, str, str]] = [
    ("invalid base64 in a data URI", "data:image/png;base64,%%%not-base64%%%", "invalid base64"),
    ("data URI not base64", "data:image/png,rawbytes", "must be base64"),
    ("invalid base64, bare", "QUJD" * 100 + "=A=B", "cannot read image file"),
    ("base64 of random bytes", b64(bytes(range(256)) * 4), "not a readable image"),
    (
        "base64 of text",
        b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>" * 10),
        "not a readable image",
    ),
    (
        "decompression bomb, data URI",
        "data:image/png;base64," + b64(png(100_000, 100_000)),
        "decompression bomb",
    ),
    ("decompression bomb, bare base64", b64(png(100_000, 100_000, pad=300)), "decompression bomb"),
    (
        "more pixels than the policy",
        "data:image/png;base64," + b64(png(8_000, 6_000)),
        "exceeds 40000000",
    ),
    ("truncated pixel data", "data:image/png;base64," + b64(png(64, 64)), "not a readable image"),
    (
        "corrupt zlib stream",
        "data:image/png;base64," + b64(png(8, 8, idat=b"\x78\x9c garbage")),
        "not a readable image",
    ),
    (
        "larger than max_bytes",
        "data:image/png;base64," + b64(real_png() + b"\0" * 2_000_000),
        "exceeds",
    ),
]


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

N_GOOD = 40


def image_event(i: int, image: str) -> bytes:
    return json.dumps(
        valid_payload(event_id=f"img-{i}", prompt=DROP, output={"image": image})
    ).encode()


MAX_PAYLOAD_E2E = 1_200_000  # above the DLQ producer's 1,000,000-byte request limit


def poison_mix() -> list[tuple[bytes, str]]:
    """(payload, what its dead letter's reason must contain), all small enough for Kafka."""

    def expect(payload: bytes, reason: str) -> tuple[bytes, str]:
        if len(payload) > MAX_PAYLOAD_E2E:
            return payload, f"exceeds the limit of {MAX_PAYLOAD_E2E} bytes"
        return payload, reason

    mix = [expect(p, r) for _, p, r in NAMED_REJECTS if len(p) < 1_000_000]
    # The worker refuses local paths before opening them (TELLTALE_IMAGES_WORKER_LOCAL_FILES).
    local = {"cannot read image file", "not a regular file"}
    mix += [
        expect(image_event(i, ref), "local image files are not allowed" if r in local else r)
        for i, (_, ref, r) in enumerate(BAD_IMAGES)
        if len(ref) < 900_000
    ]
    mix += [  # dead letters that would not fit into one Kafka request as they are
        (raw(output={"text": "x" * 1_300_000}), "exceeds the limit of 1200000 bytes"),
        (raw(model=DROP, output={"text": "y" * 1_100_000}), "model: Field required"),
        (b'{"event_id": "' + b"\x00" * 300_000 + b'"}', "not valid JSON"),
    ]
    mix += [
        (image_event(100, "https://169.254.169.254/latest/meta-data/"), "not on the allow-list"),
        (image_event(103, "http://169.254.169.254/latest/meta-data/"), "scheme 'http' is not"),
        (image_event(104, "file:///dev/zero"), "local image files are not allowed"),
        (image_event(101, "https://localhost/secret.png"), "not on the allow-list"),
        (image_event(102, "ftp://example.com/a.png"), "scheme 'ftp' is not allowed"),
    ]
    return mix


@pytest.fixture
def poison_stack(
    kafka_bootstrap: str, tmp_path: Path, tiny_embedder: OpenClipEmbedder
) -> Iterator[Any]:
    from test_reliability import new_stack

    with new_stack(kafka_bootstrap, tmp_path, tiny_embedder) as stack:
        yield stack


@pytest.mark.integration
def test_worker_dead_letters_every_poison_payload_and_keeps_running(poison_stack: Any) -> None:
    from test_reliability import load_events, read_topic, stored, wait_for

    stack = poison_stack
    poison = poison_mix()
    good = load_events(N_GOOD, prefix="good")
    # Content stored raw, so each letter's payload can be compared with what was sent; the
    # redacted letters are checked in test_privacy_end_to_end and test_dead_letter_redaction.
    raw = {f"TELLTALE_PRIVACY_{k}": "raw" for k in ("PROMPT_TEXT", "OUTPUT_TEXT", "ATTRIBUTES")}
    worker = stack.start(TELLTALE_WORKER_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD_E2E), **raw)
    try:
        messages = [p for p, _ in poison]
        for i, event in enumerate(good):  # interleaved, so poison and good share batches
            messages.insert(2 * i, json.dumps(event).encode())
        with Emitter(stack.bootstrap, stack.topic, max_request_size=4_000_000) as emitter:
            for i, payload in enumerate(messages):
                emitter.emit_raw(payload, key=f"m-{i}")
        total = len(poison) + N_GOOD
        wait_for(
            f"{total} committed offsets", lambda: stack.committed() >= total, 180, worker.alive
        )
        worker.alive()  # still running after all of it
    except BaseException:
        worker.stop_quietly()
        raise
    code, _ = worker.terminate()
    assert code == 0, worker.text()[-3000:]

    dead = [DeadLetter.from_json(v) for v in read_topic(stack.bootstrap, stack.dlq)]
    assert len(dead) == len(poison), f"{len(dead)} dead letters for {len(poison)} poison payloads"
    by_offset = {(d.partition, d.offset): d for d in dead}
    assert len(by_offset) == len(poison)  # each poison payload once, none twice
    truncated = 0
    for payload, reason in poison:
        [letter] = [
            d for d in dead if d.payload_bytes == len(payload) and payload.startswith(d.original())
        ]
        assert reason in letter.reason, (letter.reason, payload[:120])
        assert letter.topic == stack.topic and letter.offset >= 0
        assert len(letter.to_json()) <= MAX_RECORD_BYTES
        assert letter.truncated == (letter.original() != payload)
        truncated += letter.truncated
    # Cut: the payloads whose base64 alone exceeds 900 kB (the 300 kB of NULs fits as base64).
    assert truncated == sum(len(p) * 4 / 3 > MAX_RECORD_BYTES for p, _ in poison) == 3
    image_letters = [d for d in dead if d.reason.startswith("output.image: ")]
    assert len(image_letters) == len([p for p, _ in poison if p.startswith(b'{"event_id": "img-')])
    s = stored(stack.db)
    assert (s.events_final, s.events_physical, s.scores) == (N_GOOD, N_GOOD, N_GOOD)
    print(
        f"{len(poison)} poison payloads dead-lettered ({truncated} cut to fit,"
        f" {len(image_letters)} by the pipeline's image check), {N_GOOD} good events stored once"
    )
