"""A span record and the table of conventions → the event dict of :mod:`streams.events`.

:func:`event_of` applies :data:`~streams.otlp.conventions.CONVENTIONS` to one
:class:`~streams.otlp.wire.SpanRecord`: whether it is a generation (else :class:`Skip`), the
model, version and app from the table's keys, the content from the first convention that has
any, and the attributes the table keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.events import MAX_TEXT_CHARS, MAX_TOKENS
from streams.otlp.conventions import (
    CONVENTIONS,
    JsonMessages,
    SpanEvent,
    recognitions,
    union,
)
from streams.otlp.messages import image_value, text
from streams.otlp.wire import OtlpKind, SpanRecord

__all__ = [
    "APP_KEYS",
    "DEFAULT_MODEL_VERSION_KEYS",
    "GENERATION_OPERATIONS",
    "IMAGE_KEYS",
    "INPUT_TOKEN_KEYS",
    "KEPT_ATTRIBUTES",
    "MODEL_KEYS",
    "OUTPUT_TOKEN_KEYS",
    "RESOURCE_APP_KEYS",
    "Skip",
    "event_of",
]

_MAX_ATTRIBUTE_CHARS = 1_000
# What the extractor reads, derived from the table (the documentation shows these).
_RECOGNITIONS = recognitions(CONVENTIONS)
_NO_OPERATION = "no gen_ai operation"  # the skip reason when no recognition matched
MODEL_KEYS = union(c.model_keys for c in CONVENTIONS)
APP_KEYS = union(c.app_keys for c in CONVENTIONS)
RESOURCE_APP_KEYS = union(c.resource_app_keys for c in CONVENTIONS)
IMAGE_KEYS = union(c.image_keys for c in CONVENTIONS)
KEPT_ATTRIBUTES = union(c.kept() for c in CONVENTIONS)
INPUT_TOKEN_KEYS = union(c.input_token_keys for c in CONVENTIONS)
OUTPUT_TOKEN_KEYS = union(c.output_token_keys for c in CONVENTIONS)
_CONTENT_SOURCES = tuple((c.content, c.name) for c in CONVENTIONS if c.content is not None)
_IMAGE_SOURCES = tuple((key, c.name) for c in CONVENTIONS for key in c.image_keys)
_LOG_EVENTS = {c.log_event: c for c in CONVENTIONS if c.log_event}
# Log records may carry a JSON-messages convention's attributes in their body.
_BODY_KEYS = union((c.content.input_key, c.content.output_key) for c in CONVENTIONS
                   if isinstance(c.content, JsonMessages))  # fmt: skip

GENERATION_OPERATIONS = next(
    (r.values for r in _RECOGNITIONS if r.key == "gen_ai.operation.name"), frozenset()
)
"""``gen_ai.operation.name`` values that describe one model generation (OpenLIT says ``image``)."""

DEFAULT_MODEL_VERSION_KEYS = union(c.model_version_keys for c in CONVENTIONS)
"""Where ``model_version`` comes from by default: the first of these with a value, looked up in
the span's (or log record's) attributes, then in the resource's."""


class Skip(Exception):
    """Not a generation: counted under ``reason``, not dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event_of(
    item: SpanRecord, kind: OtlpKind, model_version_from: Sequence[str],
    default_model_version: str, default_model: str,
) -> dict[str, Any]:  # fmt: skip
    """The event dict of one span or log record (validated by the caller), or :class:`Skip`."""
    attrs = item.attrs
    if kind == "spans":
        _require_generation(attrs)
        events: Sequence[SpanEvent] = item.events
        timestamp, latency = item.start, _latency(item.start, item.end)
    else:
        attrs = dict(attrs)
        name = item.name or str(attrs.get("event.name", ""))
        row = _LOG_EVENTS.get(name)  # a convention's inference-details record
        if row is None or (row.recognised_by is not None and row.recognised_by.key in attrs):
            _require_generation(attrs)
        if isinstance(item.body, dict):  # some SDKs put the messages into the body
            for key in _BODY_KEYS:
                if key in item.body and key not in attrs:
                    attrs[key] = item.body[key]
        events, timestamp, latency = [], item.start, None
    content = _content(attrs, events)
    model = _first(attrs, MODEL_KEYS)
    version = _first(attrs, model_version_from) or _first(item.resource, model_version_from)
    app = _first(item.resource, RESOURCE_APP_KEYS) or _first(attrs, APP_KEYS)
    attributes = {
        key: text(attrs[key])[:_MAX_ATTRIBUTE_CHARS] for key in KEPT_ATTRIBUTES if key in attrs
    }
    attributes["otel.trace_id"] = item.trace_id
    attributes["otel.span_id"] = item.span_id
    attributes["otel.convention"] = content.convention
    if content.clipped:
        attributes["telltale.clipped"] = ",".join(content.clipped)
    data: dict[str, Any] = {
        "event_id": _event_id(item),
        "timestamp": _nanos(timestamp),
        "model": model or default_model,
        "model_version": version or default_model_version,
        "app": app or "",
        "attributes": attributes,
    }
    if latency is not None:
        data["latency_ms"] = latency
    usage = {}
    for name, keys in (("input_tokens", INPUT_TOKEN_KEYS), ("output_tokens", OUTPUT_TOKEN_KEYS)):
        count = _tokens(attrs, keys, attributes)
        if count is not None:
            usage[name] = count
    if usage:
        data["usage"] = usage
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


def _require_generation(attrs: Mapping[str, Any]) -> None:
    for r in _RECOGNITIONS:
        value = attrs.get(r.key)
        is_set = r.key in attrs if r.null_decides else value is not None
        if not r.not_a_generation:  # only admits
            if is_set and str(value) in r.values:
                return
            continue
        if is_set:
            shown = str(value).upper() if r.upper else str(value)
            if shown not in r.values:
                raise Skip(r.not_a_generation.format(value=str(value)[:40]))
            return
    raise Skip(_NO_OPERATION)


def _latency(start: int, end: int) -> float | None:
    return (end - start) / 1e6 if end >= start > 0 else None


def _event_id(item: SpanRecord) -> str:
    if item.trace_id.strip("0") and item.span_id.strip("0"):
        return f"{item.trace_id}-{item.span_id}"
    # A log record outside a span: the id is the hash of the record, so a redelivery of the
    # same record is the same event.
    return "otlp-" + hashlib.sha256(item.identity).hexdigest()[:32]


def _tokens(
    attrs: Mapping[str, Any], keys: Sequence[str], attributes: dict[str, str]
) -> int | None:
    """The first of ``keys`` that holds a token count (an int, or its decimal text, in range).

    A value that is not a count (a float, a negative number, text) does not reject a span that
    is otherwise a fine generation: it is kept in ``attributes`` under its key, as before the
    contract had ``usage``, and the next key is tried.
    """
    found = None
    for key in keys:
        value = attrs.get(key)
        if value is None:
            continue
        count = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
            count = int(value)
        if count is not None and 0 <= count <= MAX_TOKENS:
            if found is None:
                found = count
        else:
            attributes[key] = text(value)[:_MAX_ATTRIBUTE_CHARS]
    return found


def _nanos(value: int) -> str:
    if value <= 0:
        return ""  # validation reports the missing timestamp
    return datetime.fromtimestamp(value / 1e9, tz=UTC).isoformat()


def _first(attrs: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, "", []):
            return text(value)[:512]
    return ""


@dataclass
class _Content:
    prompt: str = ""
    output: str = ""
    image: str = ""
    convention: str = "none"
    clipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("prompt", "output"):
            value = getattr(self, name)
            if len(value) > MAX_TEXT_CHARS:  # keep the event; say that its text was cut
                setattr(self, name, value[:MAX_TEXT_CHARS])
                self.clipped.append(name)


def _content(attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> _Content:
    """The content of the first convention, in table order, that has any."""
    for source, name in _CONTENT_SOURCES:
        prompt, output, image = source.read(attrs, events)
        if prompt or output or image:
            return _Content(prompt, output, image or _image(attrs)[0], name)
    image, found = _image(attrs)
    return _Content(image=image, convention=found if image else "none")


def _image(attrs: Mapping[str, Any]) -> tuple[str, str]:
    """An output image from the conventions' image attributes, and that convention's name."""
    for key, name in _IMAGE_SOURCES:
        image = image_value(attrs.get(key))
        if image:
            return image, name
    return "", ""
