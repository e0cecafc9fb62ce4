"""OpenTelemetry GenAI spans and log records → generation events (pure functions, no Kafka).

The OpenTelemetry Collector's Kafka exporter writes one record per export batch: an
``ExportTraceServiceRequest`` (topic ``otlp_spans``) or ``ExportLogsServiceRequest`` (topic
``otlp_logs``), encoded ``otlp_proto`` (its default) or ``otlp_json``. :func:`decode_otlp`
detects the encoding per record (OTLP/JSON is a JSON object, protobuf never starts with ``{``)
and returns the events the record describes, how many spans or log records were skipped and
why, and the ones that looked like generations but failed validation.

Which spans are generations: ``gen_ai.operation.name`` in :data:`GENERATION_OPERATIONS`
(``chat``, ``text_completion``, ``generate_content``, ...), OpenInference's
``openinference.span.kind = LLM``, or OpenLLMetry's ``llm.request.type`` chat/completion.
Everything else (HTTP spans, tool calls, embeddings, agents) is skipped and counted.

Content is looked up in this order, the first convention that has any wins (the README has
the full table):

1. current conventions (semconv ≥ 1.37): ``gen_ai.input.messages`` / ``gen_ai.output.messages``
   (JSON, or a structured attribute), on the span or on a
   ``gen_ai.client.inference.operation.details`` log record;
2. pre-1.37: ``gen_ai.prompt.N.content`` / ``gen_ai.completion.N.content`` attributes
   (OpenLLMetry), the ``gen_ai.content.prompt`` / ``gen_ai.content.completion`` span events with
   their ``gen_ai.prompt`` / ``gen_ai.completion`` attribute (also OpenLIT's names), and
   ``gen_ai.prompt`` / ``gen_ai.completion`` span attributes;
3. OpenInference: ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``, then
   ``input.value`` / ``output.value``.

The prompt is the text of the last ``user`` message (the turn this call answers; earlier turns
are history), or all text when no message has a role. The output is the text of the first
output message (the first choice). ``blob`` parts with an image MIME type become an inline
``data:`` image, ``uri`` parts a URL, OpenLIT's ``gen_ai.response.image`` likewise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.errors import InvalidEvent, JsonTooDeep
from streams.events import MAX_TEXT_CHARS, GenerationEvent, validate_event
from streams.settings import comma_list

__all__ = [
    "DEFAULT_MODEL_VERSION_KEYS",
    "GENERATION_OPERATIONS",
    "OtlpDecoded",
    "OtlpMapping",
    "decode_otlp",
    "otlp_kind_of_topic",
]

GENERATION_OPERATIONS = frozenset({
    "chat", "text_completion", "generate_content", "completion", "image", "image_generation",
    "create_image", "generate_image",
})  # fmt: skip
"""``gen_ai.operation.name`` values that describe one model generation (OpenLIT says ``image``)."""

DEFAULT_MODEL_VERSION_KEYS = ("gen_ai.response.model", "gen_ai.prompt.version", "service.version")
"""Where ``model_version`` comes from by default: the first of these with a value, looked up in
the span's (or log record's) attributes, then in the resource's."""

OtlpKind = Literal["spans", "logs"]

_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_MAX_ATTRIBUTE_CHARS = 1_000
# OTLP/JSON wraps each level of an attribute value in up to four levels of objects and arrays
# (AnyValue, kvlistValue, values, KeyValue) under an envelope of ten: a record this deep still
# holds values within MAX_JSON_DEPTH, which each span's attributes are then held to.
_MAX_RECORD_DEPTH = 4 * MAX_JSON_DEPTH
_INDEX = re.compile(r"[0-9]{1,9}")  # a message index: ASCII digits ("²".isdigit() is True)
_UNSIGNED = re.compile(r"[0-9]{1,20}")
_SIGNED = re.compile(r"-?[0-9]{1,19}")
# What reading one span's hostile fields may raise beyond InvalidEvent: that span is invalid,
# the record's other spans are kept (the decoder never lets these escape).
_DECODE_ERRORS = (ArithmeticError, AttributeError, LookupError, RecursionError, TypeError,
                  ValueError)  # fmt: skip
_KEPT_ATTRIBUTES = (
    "gen_ai.provider.name", "gen_ai.system", "gen_ai.operation.name", "gen_ai.response.id",
    "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens", "gen_ai.request.temperature",
    "gen_ai.request.max_tokens", "gen_ai.environment", "deployment.environment",
    "deployment.environment.name", "user.id", "session.id", "gen_ai.conversation.id",
    "enduser.id", "llm.provider", "llm.system", "openinference.span.kind",
)  # fmt: skip


class OtlpMapping(BaseModel):
    """How OTLP attributes map onto the event contract where a choice is needed.

    ``model_version_from``: attribute names tried in order for ``model_version`` (span or log
    attributes first, then resource attributes); ``default_model_version`` when none has a
    value. A plain model: :mod:`telltale.settings` binds it to ``TELLTALE_OTLP_*``.
    """

    model_config = ConfigDict(frozen=True)

    model_version_from: tuple[str, ...] = Field(
        default=DEFAULT_MODEL_VERSION_KEYS,
        description="attributes tried in order for model_version (span, then resource)",
    )
    default_model_version: str = "unknown"
    default_model: str = "unknown"

    @field_validator("model_version_from", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)


@dataclass
class OtlpDecoded:
    """What one OTLP export record held."""

    encoding: Literal["otlp_proto", "otlp_json"]
    events: list[GenerationEvent] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> spans/log records
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (span description, reason)

    @property
    def items(self) -> int:
        return len(self.events) + sum(self.skipped.values()) + len(self.invalid)


def otlp_kind_of_topic(topic: str) -> OtlpKind:
    """The Collector's topics: ``otlp_logs`` carries log records, anything else spans."""
    return "logs" if "log" in topic.lower() else "spans"


def decode_otlp(
    raw: bytes, kind: OtlpKind = "spans", mapping: OtlpMapping | None = None
) -> OtlpDecoded:
    """Decode one Collector export record into generation events.

    Raises :class:`InvalidEvent` when the record itself is malformed (neither valid OTLP
    protobuf nor OTLP/JSON, or its JSON nested deeper than four times
    :data:`~streams._json.MAX_JSON_DEPTH`). A span or log record that cannot be read or fails
    validation, whatever is wrong with it, is reported in ``invalid`` with its trace and span
    id; the record's other spans are decoded all the same.
    """
    mapping = mapping or OtlpMapping()
    if raw.lstrip()[:1] == b"{":
        decoded = OtlpDecoded(encoding="otlp_json")
        items = _json_items(raw, kind)
    else:
        decoded = OtlpDecoded(encoding="otlp_proto")
        items = _proto_items(raw, kind)
    for item, resource in items:
        if isinstance(item, _Unreadable):
            decoded.invalid.append((item.description, item.reason))
        else:
            _add(decoded, item, resource, kind, mapping)
    return decoded


@dataclass
class _Item:
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


@dataclass(frozen=True)
class _Unreadable:
    """A span or log record whose fields could not be read: invalid, with the reason."""

    description: str
    reason: str


class _Malformed(ValueError):
    """A field of the wrong shape or type (a ``ValueError``: the record-level check reports
    it as a malformed record, the per-item one as an invalid item with this reason)."""


class _Skip(Exception):
    """Not a generation: counted under ``reason``, not dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _add(
    decoded: OtlpDecoded, item: _Item, resource: Mapping[str, Any], kind: OtlpKind,
    mapping: OtlpMapping,
) -> None:  # fmt: skip
    """Decode one span or log record into ``decoded``: an event, a skip, or an invalid item."""
    try:
        _check_depth(item)
        data = (_span_event if kind == "spans" else _log_event)(item, resource, mapping)
        event = validate_event(data, allow_empty=True)
    except _Skip as skip:
        decoded.skipped[skip.reason] += 1
    except InvalidEvent as exc:
        decoded.invalid.append((_describe(item, kind), exc.reason))
    except _DECODE_ERRORS as exc:
        decoded.invalid.append((_describe(item, kind), _unexpected(exc)))
    else:
        decoded.events.append(event)


def _unexpected(exc: BaseException) -> str:
    """The reason for an error no check named (a hostile input this decoder did not foresee)."""
    return f"could not be decoded: {type(exc).__name__}: {str(exc)[:200]}"


def _describe(item: _Item, kind: OtlpKind) -> str:
    """How a dead letter names a span or log record: its name, trace id and span id."""
    if kind == "spans":
        return f"span {item.name[:80]!r} {item.trace_id}/{item.span_id}"
    name = item.name or str(item.attrs.get("event.name", ""))
    return f"log record {name[:80] or '(unnamed)'} {item.trace_id}/{item.span_id}"


def _check_depth(item: _Item) -> None:
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


_Items = list[tuple[_Item | _Unreadable, dict[str, Any]]]


def _proto_items(raw: bytes, kind: OtlpKind) -> _Items:
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
    items: _Items = []
    if kind == "spans":
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    items.append((_Item(
                        span.name, _attributes(span.attributes), span.trace_id.hex(),
                        span.span_id.hex(), span.start_time_unix_nano, span.end_time_unix_nano,
                        [(e.name, _attributes(e.attributes)) for e in span.events], None, b"",
                    ), resource))  # fmt: skip
    else:
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    items.append((_Item(
                        record.event_name, _attributes(record.attributes),
                        record.trace_id.hex(), record.span_id.hex(),
                        record.time_unix_nano or record.observed_time_unix_nano, 0, [],
                        _any(record.body) if record.HasField("body") else None,
                        record.SerializeToString(deterministic=True),
                    ), resource))  # fmt: skip
    return items


def _json_items(raw: bytes, kind: OtlpKind) -> _Items:
    """OTLP/JSON read directly (protobuf's ``json_format`` is several times slower): camelCase
    or snake_case keys, hex trace and span ids, 64-bit integers as strings or numbers.

    The record's shape (resources, scopes, lists of spans) is checked here; each span's or log
    record's fields are read on their own, so one that cannot be read is :class:`_Unreadable`
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
        items: _Items = []
        for resource_part in _objects(_get(document, outer)):
            resource, unreadable = _json_resource(resource_part)
            for scope in _objects(_get(resource_part, inner)):
                for x in _objects(_get(scope, leaf)):
                    if unreadable:
                        items.append((_Unreadable(_describe_raw(x, kind), unreadable), resource))
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
    except _DECODE_ERRORS as exc:
        return {}, f"resource: {_unexpected(exc)}"


def _json_leaf(x: dict[str, Any], kind: OtlpKind) -> _Item | _Unreadable:
    """One span or log record read from OTLP/JSON, or why it cannot be."""
    try:
        return _json_span(x) if kind == "spans" else _json_log(x)
    except InvalidEvent as exc:
        return _Unreadable(_describe_raw(x, kind), exc.reason)
    except _Malformed as exc:
        return _Unreadable(_describe_raw(x, kind), str(exc))
    except _DECODE_ERRORS as exc:
        return _Unreadable(_describe_raw(x, kind), _unexpected(exc))


def _describe_raw(x: dict[str, Any], kind: OtlpKind) -> str:
    """:func:`_describe` for an item that could not be read: its fields as they came."""

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


def _json_span(x: dict[str, Any]) -> _Item:
    events = [(str(_get(e, "name") or ""), _json_attributes(_get(e, "attributes")))
              for e in _objects(_get(x, "events"))]  # fmt: skip
    return _Item(
        str(_get(x, "name") or ""), _json_attributes(_get(x, "attributes")),
        _hex(_get(x, "traceId")), _hex(_get(x, "spanId")), _time(x, "startTimeUnixNano"),
        _time(x, "endTimeUnixNano"), events, None, b"",
    )  # fmt: skip


def _json_log(x: dict[str, Any]) -> _Item:
    body = _get(x, "body")
    return _Item(
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


def _span_event(span: _Item, resource: Mapping[str, Any], mapping: OtlpMapping) -> dict[str, Any]:
    attrs = span.attrs
    _require_generation(attrs)
    content = _content(attrs, span.events)
    start, end = span.start, span.end
    latency = (end - start) / 1e6 if end >= start > 0 else None
    return _event(attrs, resource, mapping, content, _event_id(span), _nanos(start), latency,
                  span.trace_id, span.span_id)  # fmt: skip


def _log_event(record: _Item, resource: Mapping[str, Any], mapping: OtlpMapping) -> dict[str, Any]:
    attrs = dict(record.attrs)
    name = record.name or str(attrs.get("event.name", ""))
    if name != _DETAILS_EVENT or "gen_ai.operation.name" in attrs:
        _require_generation(attrs)
    if isinstance(record.body, dict):  # some SDKs put the messages into the body
        for key in ("gen_ai.input.messages", "gen_ai.output.messages"):
            if key in record.body and key not in attrs:
                attrs[key] = record.body[key]
    content = _content(attrs, [])
    return _event(attrs, resource, mapping, content, _event_id(record), _nanos(record.start),
                  None, record.trace_id, record.span_id)  # fmt: skip


def _require_generation(attrs: Mapping[str, Any]) -> None:
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None:
        if str(operation) not in GENERATION_OPERATIONS:
            raise _Skip(f"gen_ai operation {str(operation)[:40]!r} is not a generation")
        return
    if "openinference.span.kind" in attrs:
        if str(attrs["openinference.span.kind"]).upper() != "LLM":
            raise _Skip("OpenInference span kind is not LLM")
        return
    if str(attrs.get("llm.request.type", "")) in ("chat", "completion"):
        return
    raise _Skip("no gen_ai operation")


def _event_id(item: _Item) -> str:
    if item.trace_id.strip("0") and item.span_id.strip("0"):
        return f"{item.trace_id}-{item.span_id}"
    # A log record outside a span: the id is the hash of the record, so a redelivery of the
    # same record is the same event.
    return "otlp-" + hashlib.sha256(item.identity).hexdigest()[:32]


def _nanos(value: int) -> str:
    if value <= 0:
        return ""  # validation reports the missing timestamp
    return datetime.fromtimestamp(value / 1e9, tz=UTC).isoformat()


def _event(
    attrs: Mapping[str, Any], resource: Mapping[str, Any], mapping: OtlpMapping,
    content: _Content, event_id: str, timestamp: str, latency_ms: float | None,
    trace_id: str, span_id: str,
) -> dict[str, Any]:  # fmt: skip
    model = _first(attrs, ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name"))
    version = _first(attrs, mapping.model_version_from) or _first(
        resource, mapping.model_version_from
    )
    app = _first(resource, ("service.name",)) or _first(attrs, ("gen_ai.application_name",))
    attributes = {
        key: _text(attrs[key])[:_MAX_ATTRIBUTE_CHARS] for key in _KEPT_ATTRIBUTES if key in attrs
    }
    attributes["otel.trace_id"] = trace_id
    attributes["otel.span_id"] = span_id
    attributes["otel.convention"] = content.convention
    if content.clipped:
        attributes["telltale.clipped"] = ",".join(content.clipped)
    data: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "model": model or mapping.default_model,
        "model_version": version or mapping.default_model_version,
        "app": app or "",
        "attributes": attributes,
    }
    if latency_ms is not None:
        data["latency_ms"] = latency_ms
    if content.prompt:
        data["prompt"] = {"text": content.prompt}
    output: dict[str, str] = {}
    if content.output:
        output["text"] = content.output
    if content.image:
        output["image"] = content.image
    if output:
        data["output"] = output
    return data


def _first(attrs: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, "", []):
            return _text(value)[:512]
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


# -- content ----------------------------------------------------------------------------------


@dataclass
class _Content:
    prompt: str = ""
    output: str = ""
    image: str = ""
    convention: str = "none"
    clipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("prompt", "output"):
            text = getattr(self, name)
            if len(text) > MAX_TEXT_CHARS:  # keep the event; say that its text was cut
                setattr(self, name, text[:MAX_TEXT_CHARS])
                self.clipped.append(name)


def _content(attrs: Mapping[str, Any], events: Sequence[tuple[str, Mapping[str, Any]]]) -> _Content:
    for convention, extract in (
        ("gen_ai.messages", _current),
        ("gen_ai.prompt.indexed", _indexed),
        ("gen_ai.content.events", lambda a: _legacy_events(events)),
        ("gen_ai.prompt.attributes", _legacy_attributes),
        ("openinference.messages", _openinference_messages),
        ("openinference.values", _openinference_values),
    ):
        prompt, output, image = extract(attrs)
        if prompt or output or image:
            return _Content(prompt, output, image or _openlit_image(attrs), convention)
    image = _openlit_image(attrs)
    return _Content(image=image, convention="gen_ai.response.image" if image else "none")


Extracted = tuple[str, str, str]  # prompt text, output text, output image


def _current(attrs: Mapping[str, Any]) -> Extracted:
    inputs = _messages(attrs.get("gen_ai.input.messages"), "gen_ai.input.messages")
    outputs = _messages(attrs.get("gen_ai.output.messages"), "gen_ai.output.messages")
    return _prompt_of(inputs), *_output_of(outputs)


def _messages(value: Any, name: str) -> list[dict[str, Any]]:
    """A message list from a JSON string or a structured attribute (anything else: none).

    Text that is not JSON is one message of plain text; JSON nested deeper than
    :data:`~streams._json.MAX_JSON_DEPTH` makes the span invalid (``name`` says where)."""
    if isinstance(value, str):
        try:
            value = parse_json(value)
        except JsonTooDeep as exc:
            raise InvalidEvent(f"{name}: {exc.reason}") from exc
        except ValueError:
            return [{"role": "", "parts": [{"type": "text", "content": value}]}]
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _parts(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Parts of one message in any of the conventions' shapes."""
    parts = message.get("parts")
    if isinstance(parts, list):
        return [p for p in parts if isinstance(p, dict)]
    content = message.get("content", message.get("message", {}).get("content")
                          if isinstance(message.get("message"), dict) else None)  # fmt: skip
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):  # OpenAI-style content parts
        out: list[Mapping[str, Any]] = []
        for p in content:
            if isinstance(p, str):
                out.append({"type": "text", "content": p})
            elif isinstance(p, dict) and p.get("type") == "text":
                out.append({"type": "text", "content": p.get("text", p.get("content", ""))})
            elif isinstance(p, dict) and p.get("type") == "image_url":
                url = p.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                out.append({"type": "uri", "modality": "image", "uri": url})
        return out
    return []


def _text_of(message: Mapping[str, Any]) -> str:
    texts = [str(p.get("content", p.get("text", ""))) for p in _parts(message)
             if p.get("type") in ("text", None)]  # fmt: skip
    return "\n".join(t for t in texts if t)


def _image_of(message: Mapping[str, Any]) -> str:
    for part in _parts(message):
        mime = str(part.get("mime_type") or part.get("mimeType") or "")
        is_image = mime.startswith("image/") or part.get("modality") == "image"
        if not is_image:
            continue
        if part.get("type") == "blob" and part.get("content"):
            return f"data:{mime or 'image/png'};base64,{part['content']}"
        if part.get("type") == "uri" and part.get("uri"):
            return str(part["uri"])
    return ""


def _prompt_of(messages: Sequence[Mapping[str, Any]]) -> str:
    users = [m for m in messages if str(m.get("role", "")).lower() == "user"]
    if users:
        return _text_of(users[-1])
    return "\n".join(t for t in (_text_of(m) for m in messages) if t)


def _output_of(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    for message in messages:
        text, image = _text_of(message), _image_of(message)
        if text or image:
            return text, image
    return "", ""


def _indexed_messages(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.role`` / ``prefix.N.content`` attributes (OpenLLMetry) as a message list."""
    by_index: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        index, _, name = key[len(start) :].partition(".")
        if _INDEX.fullmatch(index) and name in ("role", "content"):
            by_index.setdefault(int(index), {})[name] = value
    return [by_index[i] for i in sorted(by_index)]


def _indexed(attrs: Mapping[str, Any]) -> Extracted:
    inputs = _indexed_messages(attrs, "gen_ai.prompt")
    outputs = _indexed_messages(attrs, "gen_ai.completion")
    return _prompt_of(inputs), *_output_of(outputs)


def _legacy_value(value: Any, name: str) -> list[dict[str, Any]]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON message list or plain text."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            messages = _messages(stripped, name)
            if messages and any(_parts(m) for m in messages):
                return messages
        return [{"role": "", "content": value}] if value else []
    return _messages(value, name)


def _legacy_events(events: Sequence[tuple[str, Mapping[str, Any]]]) -> Extracted:
    prompt: list[dict[str, Any]] = []
    completion: list[dict[str, Any]] = []
    for name, attributes in events:
        if name == "gen_ai.content.prompt":
            prompt += _legacy_value(attributes.get("gen_ai.prompt"), "gen_ai.prompt")
        elif name == "gen_ai.content.completion":
            completion += _legacy_value(attributes.get("gen_ai.completion"), "gen_ai.completion")
    return _prompt_of(prompt), *_output_of(completion)


def _legacy_attributes(attrs: Mapping[str, Any]) -> Extracted:
    prompt = _legacy_value(attrs.get("gen_ai.prompt"), "gen_ai.prompt")
    completion = _legacy_value(attrs.get("gen_ai.completion"), "gen_ai.completion")
    return _prompt_of(prompt), *_output_of(completion)


def _openinference_list(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``llm.input_messages.N.message.role|content|contents.M.message_content.*``."""
    by_index: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start) :].partition(".")
        if not _INDEX.fullmatch(index):
            continue
        message = by_index.setdefault(int(index), {"parts": {}})
        if rest == "message.role":
            message["role"] = value
        elif rest == "message.content":
            message["parts"][-1] = {"type": "text", "content": value}
        elif rest.startswith("message.contents."):
            j, _, leaf = rest[len("message.contents.") :].partition(".")
            if _INDEX.fullmatch(j):
                part = message["parts"].setdefault(int(j), {})
                if leaf == "message_content.text":
                    part.update(type="text", content=value)
                elif leaf == "message_content.image.image.url":
                    part.update(type="uri", modality="image", uri=value)
    messages = []
    for i in sorted(by_index):
        message = by_index[i]
        parts = [message["parts"][j] for j in sorted(message["parts"])]
        messages.append({"role": message.get("role", ""), "parts": parts})
    return messages


def _openinference_messages(attrs: Mapping[str, Any]) -> Extracted:
    inputs = _openinference_list(attrs, "llm.input_messages")
    outputs = _openinference_list(attrs, "llm.output_messages")
    return _prompt_of(inputs), *_output_of(outputs)


def _openinference_values(attrs: Mapping[str, Any]) -> Extracted:
    return _plain(attrs.get("input.value")), _plain(attrs.get("output.value")), ""


def _plain(value: Any) -> str:
    return "" if value is None else _text(value)


def _openlit_image(attrs: Mapping[str, Any]) -> str:
    value = attrs.get("gen_ai.response.image")
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value:
        return ""
    if value.startswith(("http://", "https://", "s3://", "gs://", "az://", "data:")):
        return value
    try:  # OpenLIT records b64_json responses as bare base64
        base64.b64decode(value[:64] + "=" * (-len(value[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return ""
    return f"data:image/png;base64,{value}"
