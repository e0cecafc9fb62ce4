"""OTLP export records → neutral span records: the wire format, nothing of GenAI conventions.

The OpenTelemetry Collector's Kafka exporter writes one record per export batch: an
``ExportTraceServiceRequest`` (spans) or ``ExportLogsServiceRequest`` (log records), encoded
``otlp_proto`` (its default) or ``otlp_json``. :func:`read_records` detects the encoding (OTLP/JSON
is a JSON object, protobuf never starts with ``{``) and gives one :class:`SpanRecord` per span or
log record: attributes, span events, ids, times and its resource's attributes. A span whose
fields cannot be read is :class:`Unreadable` (the record's others are kept); a record that is not
OTLP at all raises :class:`InvalidEvent`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.errors import InvalidEvent, JsonTooDeep

__all__ = [
    "DECODE_ERRORS",
    "Encoding",
    "OtlpKind",
    "SpanRecord",
    "Unreadable",
    "check_record_depth",
    "describe",
    "read_records",
    "unexpected",
]

OtlpKind = Literal["spans", "logs"]
Encoding = Literal["otlp_proto", "otlp_json"]

# OTLP/JSON wraps each level of an attribute value in up to four levels of objects and arrays
# (AnyValue, kvlistValue, values, KeyValue) under an envelope of ten: a record this deep still
# holds values within MAX_JSON_DEPTH, which each span's attributes are then held to.
_MAX_RECORD_DEPTH = 4 * MAX_JSON_DEPTH
_UNSIGNED = re.compile(r"[0-9]{1,20}")
_SIGNED = re.compile(r"-?[0-9]{1,19}")
# What reading one span's hostile fields may raise beyond InvalidEvent: that span is invalid,
# the record's other spans are kept (the decoder never lets these escape).
DECODE_ERRORS = (ArithmeticError, AttributeError, LookupError, RecursionError, TypeError,
                 ValueError)  # fmt: skip


@dataclass
class SpanRecord:
    """A span or log record, whichever encoding it came in (the fields telltale reads)."""

    name: str
    attrs: dict[str, Any]
    trace_id: str  # hex
    span_id: str  # hex
    start: int  # span start, or log time (observed time when unset)
    end: int  # span end; 0 for log records
    events: list[tuple[str, dict[str, Any]]]  # span events (name, attributes)
    body: Any  # log body
    identity: bytes  # stable bytes of the whole item, hashed for ids of log records w/o span
    resource: dict[str, Any] = field(default_factory=dict)  # the resource's attributes


@dataclass(frozen=True)
class Unreadable:
    """A span or log record whose fields could not be read: invalid, with the reason."""

    description: str
    reason: str


def read_records(raw: bytes, kind: OtlpKind) -> tuple[Encoding, list[SpanRecord | Unreadable]]:
    """The encoding of one export record and its spans (or log records), in order.

    Raises :class:`InvalidEvent` when the record itself is malformed (neither valid OTLP
    protobuf nor OTLP/JSON, or its JSON nested deeper than four times
    :data:`~streams._json.MAX_JSON_DEPTH`)."""
    encoding: Encoding = "otlp_json" if raw.lstrip()[:1] == b"{" else "otlp_proto"
    pairs = _json_items(raw, kind) if encoding == "otlp_json" else _proto_items(raw, kind)
    for item, resource in pairs:
        if isinstance(item, SpanRecord):
            item.resource = resource
    return encoding, [item for item, _ in pairs]


class _Malformed(ValueError):
    """A field of the wrong shape or type (a ``ValueError``: the record-level check reports
    it as a malformed record, the per-item one as an invalid item with this reason)."""


def unexpected(exc: BaseException) -> str:
    """The reason for an error no check named (a hostile input this decoder did not foresee)."""
    return f"could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"


def describe(item: SpanRecord, kind: OtlpKind) -> str:
    """How a dead letter names a span or log record: its name, trace id and span id."""
    if kind == "spans":
        return f"span {item.name[:80]!r} {item.trace_id}/{item.span_id}"
    name = item.name or str(item.attrs.get("event.name", ""))
    return f"log record {name[:80] or '(unnamed)'} {item.trace_id}/{item.span_id}"


def check_record_depth(item: SpanRecord) -> None:
    """Attribute values nested deeper than MAX_JSON_DEPTH make the item invalid (the
    protobuf parser stops at 100 levels of messages, OTLP/JSON at the record's depth)."""
    named = [("", item.attrs), *((f"event {name[:80]!r} ", a) for name, a in item.events)]
    for where, attrs in named:
        for key, value in attrs.items():
            try:
                check_depth(value, MAX_JSON_DEPTH)
            except JsonTooDeep as exc:
                raise InvalidEvent(f"{where}attribute {key[:80]!r}: {exc.reason}") from exc
    try:
        check_depth(item.body, MAX_JSON_DEPTH)
    except JsonTooDeep as exc:
        raise InvalidEvent(f"body: {exc.reason}") from exc


# -- record parsing ---------------------------------------------------------------------------


_Records = list[tuple[SpanRecord | Unreadable, dict[str, Any]]]


def _proto_items(raw: bytes, kind: OtlpKind) -> _Records:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    if not raw:
        raise InvalidEvent("empty OTLP record")
    request: Any = ExportTraceServiceRequest() if kind == "spans" else ExportLogsServiceRequest()
    try:
        request.ParseFromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise InvalidEvent(f"not a valid OTLP protobuf export request ({kind}): {exc}") from exc
    items: _Records = []
    if kind == "spans":
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    items.append((SpanRecord(
                        span.name, _attributes(span.attributes), span.trace_id.hex(),
                        span.span_id.hex(), span.start_time_unix_nano, span.end_time_unix_nano,
                        [(e.name, _attributes(e.attributes)) for e in span.events], None, b"",
                    ), resource))  # fmt: skip
    else:
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    items.append((SpanRecord(
                        record.event_name, _attributes(record.attributes),
                        record.trace_id.hex(), record.span_id.hex(),
                        record.time_unix_nano or record.observed_time_unix_nano, 0, [],
                        _any(record.body) if record.HasField("body") else None,
                        record.SerializeToString(deterministic=True),
                    ), resource))  # fmt: skip
    return items


def _json_items(raw: bytes, kind: OtlpKind) -> _Records:
    """OTLP/JSON read directly (protobuf's ``json_format`` is several times slower): camelCase
    or snake_case keys, hex trace and span ids, 64-bit integers as strings or numbers.

    The record's shape (resources, scopes, lists of spans) is checked here; each span's or log
    record's fields are read on their own, so one that cannot be read is :class:`Unreadable`
    and the others are kept."""
    try:
        document = parse_json(raw, _MAX_RECORD_DEPTH)
        if not isinstance(document, dict):
            raise ValueError(f"a JSON {type(document).__name__}, not an object")
        outer, inner, leaf = (
            ("resourceSpans", "scopeSpans", "spans") if kind == "spans"
            else ("resourceLogs", "scopeLogs", "logRecords")
        )  # fmt: skip
        if document and _get(document, outer) is None:
            raise ValueError(f"no {outer}")
        items: _Records = []
        for resource_part in _objects(_get(document, outer)):
            resource, unreadable = _json_resource(resource_part)
            for scope in _objects(_get(resource_part, inner)):
                for x in _objects(_get(scope, leaf)):
                    if unreadable:
                        items.append((Unreadable(_describe_raw(x, kind), unreadable), resource))
                    else:
                        items.append((_json_leaf(x, kind), resource))
        return items
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidEvent(f"not a valid OTLP/JSON export request ({kind}): {exc}") from exc


def _json_resource(part: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A resource's attributes, or ``({}, reason)`` when they cannot be read (its spans are
    then invalid, not the whole record)."""
    try:
        return _json_attributes(_get(_get(part, "resource") or {}, "attributes")), ""
    except InvalidEvent as exc:
        return {}, f"resource: {exc.reason}"
    except _Malformed as exc:
        return {}, f"resource: {exc}"
    except DECODE_ERRORS as exc:
        return {}, f"resource: {unexpected(exc)}"


def _json_leaf(x: dict[str, Any], kind: OtlpKind) -> SpanRecord | Unreadable:
    """One span or log record read from OTLP/JSON, or why it cannot be."""
    try:
        return _json_span(x) if kind == "spans" else _json_log(x)
    except InvalidEvent as exc:
        return Unreadable(_describe_raw(x, kind), exc.reason)
    except _Malformed as exc:
        return Unreadable(_describe_raw(x, kind), str(exc))
    except DECODE_ERRORS as exc:
        return Unreadable(_describe_raw(x, kind), unexpected(exc))


def _describe_raw(x: dict[str, Any], kind: OtlpKind) -> str:
    """:func:`describe` for an item that could not be read: its fields as they came."""

    def shown(key: str) -> str:
        value = x.get(key, x.get(_snake(key)))
        if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{1,64}", value):
            return value.lower()
        return "(none)" if value in (None, "") else repr(value)[:40]

    ids = f"{shown('traceId')}/{shown('spanId')}"
    if kind == "spans":
        name = x.get("name")
        return f"span {name[:80] if isinstance(name, str) else '(unnamed)'!r} {ids}"
    name = x.get("eventName", x.get("event_name"))
    return f"log record {name[:80] if isinstance(name, str) and name else '(unnamed)'} {ids}"


def _json_span(x: dict[str, Any]) -> SpanRecord:
    events = [(str(_get(e, "name") or ""), _json_attributes(_get(e, "attributes")))
              for e in _objects(_get(x, "events"))]  # fmt: skip
    return SpanRecord(
        str(_get(x, "name") or ""), _json_attributes(_get(x, "attributes")),
        _hex(_get(x, "traceId")), _hex(_get(x, "spanId")), _time(x, "startTimeUnixNano"),
        _time(x, "endTimeUnixNano"), events, None, b"",
    )  # fmt: skip


def _json_log(x: dict[str, Any]) -> SpanRecord:
    body = _get(x, "body")
    return SpanRecord(
        str(_get(x, "eventName") or ""), _json_attributes(_get(x, "attributes")),
        _hex(_get(x, "traceId")), _hex(_get(x, "spanId")),
        _time(x, "timeUnixNano") or _time(x, "observedTimeUnixNano"), 0, [],
        _json_any(body) if isinstance(body, dict) else None,
        json.dumps(x, sort_keys=True).encode(),
    )  # fmt: skip


def _get(node: Any, camel: str) -> Any:
    if not isinstance(node, dict):
        raise _Malformed(f"expected an object, got {type(node).__name__}")
    value = node.get(camel)
    return node.get(_snake(camel)) if value is None else value


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _objects(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Malformed("expected a list of objects")
    return value


def _hex(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"trace/span id must be a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value).hex()
    except ValueError as exc:
        raise _Malformed(f"trace/span id {value[:40]!r} is not hex") from exc


def _time(x: dict[str, Any], camel: str) -> int:
    """A ``fixed64`` time in nanoseconds (a decimal string or a number; 0 when unset)."""
    value = _get(x, camel)
    if value is None or value == "":
        return 0
    return _integer(value, camel, _UNSIGNED, 0, 2**64)


def _integer(value: Any, name: str, digits: re.Pattern[str], low: int, high: int) -> int:
    """A 64-bit integer as OTLP/JSON writes it: a number, or a string of ASCII digits.

    Anything else (``Infinity``, ``1e30``, ``"²"``, a 5,000-digit string, ``true``) raises
    :class:`InvalidEvent` naming the field."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (  # NaN and infinities are not
        isinstance(value, str) and digits.fullmatch(value)
    ):
        number = int(value)
    if number is None or not low <= number < high:
        raise InvalidEvent(f"{name} {repr(value)[:40]} is not a {_BITS[high]} integer")
    return number


_BITS = {2**64: "64-bit unsigned", 2**63: "64-bit"}


def _json_attributes(values: Any) -> dict[str, Any]:
    return {str(_get(kv, "key")): _json_any(_get(kv, "value") or {}) for kv in _objects(values)}


def _json_any(value: dict[str, Any]) -> Any:
    """An OTLP/JSON ``AnyValue`` as a Python value (the same as :func:`_any` gives)."""
    for key, convert in _JSON_ANY:
        found = _get(value, key)
        if found is not None:
            return convert(found)
    return None


def _json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidEvent(f"boolValue {repr(value)[:40]} is not true or false")
    return value


def _json_int(value: Any) -> int:
    return _integer(value, "intValue", _SIGNED, -(2**63), 2**63)


def _json_double(value: Any) -> float:
    """A number, or the strings protobuf's JSON mapping allows (``"NaN"``, ``"Infinity"``,
    a decimal)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError as exc:  # an integer beyond the largest double
            raise InvalidEvent(f"doubleValue {str(value)[:40]}… is out of range") from exc
    if isinstance(value, str) and value.isascii():
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidEvent(f"doubleValue {repr(value)[:40]} is not a number")


_JSON_ANY: tuple[tuple[str, Any], ...] = (
    ("stringValue", str),
    ("boolValue", _json_bool),
    ("intValue", _json_int),
    ("doubleValue", _json_double),
    ("arrayValue", lambda v: [_json_any(x) for x in _objects(_get(v, "values"))]),
    ("kvlistValue", lambda v: _json_attributes(_get(v, "values"))),
    ("bytesValue", str),  # base64 in JSON, as _any() gives for protobuf bytes
)


def _any(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, which)


def _attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any(kv.value) for kv in key_values}


# -- spans and log records --------------------------------------------------------------------
