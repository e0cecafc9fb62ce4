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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.errors import InvalidEvent
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
    protobuf nor OTLP/JSON); single spans that fail validation are reported in ``invalid``.
    """
    mapping = mapping or OtlpMapping()
    if raw.lstrip()[:1] == b"{":
        decoded = OtlpDecoded(encoding="otlp_json")
        items = _json_items(raw, kind)
    else:
        decoded = OtlpDecoded(encoding="otlp_proto")
        items = _proto_items(raw, kind)
    build = _span_event if kind == "spans" else _log_event
    for item, resource in items:
        _add(decoded, lambda i=item, r=resource: build(i, r, mapping))
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


class _Skip(Exception):
    """Not a generation: counted under ``reason``, not dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _add(decoded: OtlpDecoded, build: Any) -> None:
    try:
        data, description = build()
    except _Skip as skip:
        decoded.skipped[skip.reason] += 1
        return
    try:
        decoded.events.append(validate_event(data, allow_empty=True))
    except InvalidEvent as exc:
        decoded.invalid.append((description, exc.reason))


# -- record parsing ---------------------------------------------------------------------------


def _proto_items(raw: bytes, kind: OtlpKind) -> list[tuple[_Item, dict[str, Any]]]:
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
    items: list[tuple[_Item, dict[str, Any]]] = []
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


def _json_items(raw: bytes, kind: OtlpKind) -> list[tuple[_Item, dict[str, Any]]]:
    """OTLP/JSON read directly (protobuf's ``json_format`` is several times slower): camelCase
    or snake_case keys, hex trace and span ids, 64-bit integers as strings or numbers."""
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError(f"a JSON {type(document).__name__}, not an object")
        outer, inner, leaf = (
            ("resourceSpans", "scopeSpans", "spans") if kind == "spans"
            else ("resourceLogs", "scopeLogs", "logRecords")
        )  # fmt: skip
        if document and _get(document, outer) is None:
            raise ValueError(f"no {outer}")
        items: list[tuple[_Item, dict[str, Any]]] = []
        for resource_part in _objects(_get(document, outer)):
            resource = _json_attributes(_get(_get(resource_part, "resource") or {}, "attributes"))
            for scope in _objects(_get(resource_part, inner)):
                for x in _objects(_get(scope, leaf)):
                    items.append((_json_span(x) if kind == "spans" else _json_log(x), resource))
        return items
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidEvent(f"not a valid OTLP/JSON export request ({kind}): {exc}") from exc


def _json_span(x: dict[str, Any]) -> _Item:
    events = [(str(_get(e, "name") or ""), _json_attributes(_get(e, "attributes")))
              for e in _objects(_get(x, "events"))]  # fmt: skip
    return _Item(
        str(_get(x, "name") or ""), _json_attributes(_get(x, "attributes")),
        _hex(_get(x, "traceId")), _hex(_get(x, "spanId")), _int(_get(x, "startTimeUnixNano")),
        _int(_get(x, "endTimeUnixNano")), events, None, b"",
    )  # fmt: skip


def _json_log(x: dict[str, Any]) -> _Item:
    body = _get(x, "body")
    return _Item(
        str(_get(x, "eventName") or ""), _json_attributes(_get(x, "attributes")),
        _hex(_get(x, "traceId")), _hex(_get(x, "spanId")),
        _int(_get(x, "timeUnixNano")) or _int(_get(x, "observedTimeUnixNano")), 0, [],
        _json_any(body) if isinstance(body, dict) else None,
        json.dumps(x, sort_keys=True).encode(),
    )  # fmt: skip


def _get(node: Any, camel: str) -> Any:
    if not isinstance(node, dict):
        raise TypeError(f"expected an object, got {type(node).__name__}")
    value = node.get(camel)
    return node.get(_snake(camel)) if value is None else value


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _objects(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError("expected a list of objects")
    return value


def _hex(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"trace/span id must be a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value).hex()
    except ValueError as exc:
        raise ValueError(f"trace/span id {value[:40]!r} is not hex") from exc


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def _json_attributes(values: Any) -> dict[str, Any]:
    return {str(_get(kv, "key")): _json_any(_get(kv, "value") or {}) for kv in _objects(values)}


def _json_any(value: dict[str, Any]) -> Any:
    """An OTLP/JSON ``AnyValue`` as a Python value (the same as :func:`_any` gives)."""
    for key, convert in _JSON_ANY:
        found = _get(value, key)
        if found is not None:
            return convert(found)
    return None


def _json_double(value: Any) -> float:
    return float(value)


_JSON_ANY: tuple[tuple[str, Any], ...] = (
    ("stringValue", str),
    ("boolValue", bool),
    ("intValue", int),
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


def _span_event(span: _Item, resource: Mapping[str, Any], mapping: OtlpMapping) -> tuple[
    dict[str, Any], str
]:  # fmt: skip
    attrs = span.attrs
    _require_generation(attrs)
    content = _content(attrs, span.events)
    start, end = span.start, span.end
    latency = (end - start) / 1e6 if end >= start > 0 else None
    data = _event(attrs, resource, mapping, content, _event_id(span), _nanos(start), latency,
                  span.trace_id, span.span_id)  # fmt: skip
    return data, f"span {span.name!r} {span.trace_id}/{span.span_id}"


def _log_event(record: _Item, resource: Mapping[str, Any], mapping: OtlpMapping) -> tuple[
    dict[str, Any], str
]:  # fmt: skip
    attrs = dict(record.attrs)
    name = record.name or str(attrs.get("event.name", ""))
    if name != _DETAILS_EVENT or "gen_ai.operation.name" in attrs:
        _require_generation(attrs)
    if isinstance(record.body, dict):  # some SDKs put the messages into the body
        for key in ("gen_ai.input.messages", "gen_ai.output.messages"):
            if key in record.body and key not in attrs:
                attrs[key] = record.body[key]
    content = _content(attrs, [])
    data = _event(attrs, resource, mapping, content, _event_id(record), _nanos(record.start),
                  None, record.trace_id, record.span_id)  # fmt: skip
    return data, f"log record {name or '(unnamed)'} {record.trace_id}/{record.span_id}"


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
    inputs = _messages(attrs.get("gen_ai.input.messages"))
    outputs = _messages(attrs.get("gen_ai.output.messages"))
    return _prompt_of(inputs), *_output_of(outputs)


def _messages(value: Any) -> list[dict[str, Any]]:
    """A message list from a JSON string or a structured attribute (anything else: none)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
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
        if index.isdigit() and name in ("role", "content"):
            by_index.setdefault(int(index), {})[name] = value
    return [by_index[i] for i in sorted(by_index)]


def _indexed(attrs: Mapping[str, Any]) -> Extracted:
    inputs = _indexed_messages(attrs, "gen_ai.prompt")
    outputs = _indexed_messages(attrs, "gen_ai.completion")
    return _prompt_of(inputs), *_output_of(outputs)


def _legacy_value(value: Any) -> list[dict[str, Any]]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON message list or plain text."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            messages = _messages(stripped)
            if messages and any(_parts(m) for m in messages):
                return messages
        return [{"role": "", "content": value}] if value else []
    return _messages(value)


def _legacy_events(events: Sequence[tuple[str, Mapping[str, Any]]]) -> Extracted:
    prompt: list[dict[str, Any]] = []
    completion: list[dict[str, Any]] = []
    for name, attributes in events:
        if name == "gen_ai.content.prompt":
            prompt += _legacy_value(attributes.get("gen_ai.prompt"))
        elif name == "gen_ai.content.completion":
            completion += _legacy_value(attributes.get("gen_ai.completion"))
    return _prompt_of(prompt), *_output_of(completion)


def _legacy_attributes(attrs: Mapping[str, Any]) -> Extracted:
    prompt = _legacy_value(attrs.get("gen_ai.prompt"))
    completion = _legacy_value(attrs.get("gen_ai.completion"))
    return _prompt_of(prompt), *_output_of(completion)


def _openinference_list(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``llm.input_messages.N.message.role|content|contents.M.message_content.*``."""
    by_index: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start) :].partition(".")
        if not index.isdigit():
            continue
        message = by_index.setdefault(int(index), {"parts": {}})
        if rest == "message.role":
            message["role"] = value
        elif rest == "message.content":
            message["parts"][-1] = {"type": "text", "content": value}
        elif rest.startswith("message.contents."):
            j, _, leaf = rest[len("message.contents.") :].partition(".")
            if j.isdigit():
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
