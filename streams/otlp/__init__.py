"""OpenTelemetry GenAI spans and log records → generation events (pure functions, no Kafka).

:func:`decode_otlp` reads one record of the Collector's Kafka exporter in three steps, one
module each: :mod:`~streams.otlp.wire` decodes the export request (``otlp_proto`` or
``otlp_json``) into neutral span records; :mod:`~streams.otlp.conventions` is the table of GenAI
conventions (OpenTelemetry semconv old and new, OpenLLMetry, OpenInference, OpenLIT): how a
generation is recognised, where model, tokens and content are; :mod:`~streams.otlp.extract`
applies the table to a span record and builds the event. ``docs/ingest/otlp.md`` shows the
table, generated from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.errors import InvalidEvent
from streams.events import GenerationEvent, validate_event
from streams.otlp.extract import DEFAULT_MODEL_VERSION_KEYS, GENERATION_OPERATIONS, Skip, event_of
from streams.otlp.wire import (
    DECODE_ERRORS,
    Encoding,
    OtlpKind,
    SpanRecord,
    Unreadable,
    check_record_depth,
    describe,
    read_records,
    unexpected,
)
from streams.settings import comma_list

__all__ = [
    "DEFAULT_MODEL_VERSION_KEYS",
    "GENERATION_OPERATIONS",
    "OtlpConfig",
    "OtlpDecoded",
    "OtlpKind",
    "decode_otlp",
    "otlp_kind_of_topic",
]


class OtlpConfig(BaseModel):
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

    encoding: Encoding
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
    raw: bytes, kind: OtlpKind = "spans", mapping: OtlpConfig | None = None
) -> OtlpDecoded:
    """Decode one Collector export record into generation events.

    Raises :class:`InvalidEvent` when the record itself is malformed (neither valid OTLP
    protobuf nor OTLP/JSON, or its JSON nested deeper than four times
    :data:`~streams._json.MAX_JSON_DEPTH`). A span or log record that cannot be read or fails
    validation, whatever is wrong with it, is reported in ``invalid`` with its trace and span
    id; the record's other spans are decoded all the same.
    """
    mapping = mapping or OtlpConfig()
    encoding, items = read_records(raw, kind)
    decoded = OtlpDecoded(encoding=encoding)
    for item in items:
        if isinstance(item, Unreadable):
            decoded.invalid.append((item.description, item.reason))
        else:
            _add(decoded, item, kind, mapping)
    return decoded


def _add(decoded: OtlpDecoded, item: SpanRecord, kind: OtlpKind, mapping: OtlpConfig) -> None:
    """Decode one span or log record into ``decoded``: an event, a skip, or an invalid item."""
    try:
        check_record_depth(item)
        data = event_of(item, kind, mapping.model_version_from, mapping.default_model_version,
                        mapping.default_model)  # fmt: skip
        event = validate_event(data, allow_empty=True)
    except Skip as skip:
        decoded.skipped[skip.reason] += 1
    except InvalidEvent as exc:
        decoded.invalid.append((describe(item, kind), exc.reason))
    except DECODE_ERRORS as exc:
        decoded.invalid.append((describe(item, kind), unexpected(exc)))
    else:
        decoded.events.append(event)
