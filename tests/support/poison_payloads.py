"""Payloads the contract refuses, and images only the pipeline can refuse: the named poison
cases the decoder is tested on (``tests/streams/test_events_fuzz.py``) and the mix a real worker
must dead-letter (``tests/integration/test_poison_payloads.py``)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.events import MAX_TEXT_CHARS


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
