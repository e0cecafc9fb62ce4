"""The generation event: the one message applications send per model call.

Validation happens here, at the edge. :func:`decode_event` turns raw Kafka bytes into a
:class:`GenerationEvent` or raises :class:`InvalidEvent` with a reason that a person can act on;
the caller dead-letters the payload with that reason instead of dropping it.

>>> event = decode_event(b'{"event_id": "e1", "timestamp": "2026-01-01T00:00:00Z",'
...                      b' "model": "m", "model_version": "v1", "output": {"text": "hi"}}')
>>> event.output.text
'hi'
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from signals import FIELDS
from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.errors import InvalidEvent, JsonTooDeep

__all__ = [
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_CHARS",
    "MAX_TOKENS",
    "SESSION_ID_KEYS",
    "TOP_LEVEL_FIELDS",
    "USER_ID_KEYS",
    "Carried",
    "EventTimestamp",
    "GenerationEvent",
    "Output",
    "Prompt",
    "Usage",
    "decode_event",
    "decode_record",
    "encode_event",
    "plausible_utc",
]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""Default largest accepted payload; a base64 image of a few megapixels fits."""

MAX_TEXT_CHARS = 200_000
MAX_ID_CHARS = 256  # event_id
MAX_LABEL_CHARS = 512  # model, model_version, app, release, user_id, session_id
MAX_TOKENS = 2**32 - 1
"""The largest token count of one call that the contract accepts (``UInt32`` in ``events``)."""
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(days=1)

# OpenTelemetry GenAI attribute names accepted as aliases of the contract's fields.
_OTEL_ALIASES = {
    "gen_ai.request.model": "model",
    "gen_ai.response.model": "model",
}
USER_ID_KEYS = ("user_id", "user.id", "enduser.id")
SESSION_ID_KEYS = ("session_id", "session.id", "gen_ai.conversation.id")
"""Where a user or session id may sit in ``attributes`` when the top-level field is absent, in
order of preference (the contract's own names, then OpenTelemetry's)."""

TOP_LEVEL_FIELDS = frozenset({
    "event_id", "timestamp", "model", "model_version", "prompt", "output",
    "app", "release", "latency_ms", "usage", "feedback", "user_id", "session_id", "attributes",
})  # fmt: skip
"""The contract's top-level fields; any other key of a payload is kept in ``attributes``
(``embeddings``, carried vectors, is taken off before)."""


def _rfc3339_text(value: Any) -> Any:
    # The contract is RFC 3339 text; pydantic alone would also take Unix numbers.
    if isinstance(value, bool | int | float):
        raise ValueError("timestamp must be RFC 3339 text, e.g. 2026-11-26T10:00:00Z")
    return value


def plausible_utc(value: datetime) -> datetime:
    """``value`` in UTC, or ValueError when it is out of range, before 2000 or a day ahead."""
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"timestamp {value.isoformat()} is out of range") from exc
    if value < EARLIEST_TIMESTAMP:
        raise ValueError(f"timestamp {value.isoformat()} is before {EARLIEST_TIMESTAMP.date()}")
    if value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise ValueError(f"timestamp {value.isoformat()} is more than a day in the future")
    return value


EventTimestamp = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(plausible_utc)
]
"""An RFC 3339 timestamp in UTC within the plausible range (events and feedback alike)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=MAX_TEXT_CHARS)


class Prompt(_Strict):
    text: str | None = None


class Output(_Strict):
    text: str | None = None
    image: str | None = Field(
        default=None, description="http(s) or file:// URL, a file path, or base64 / data: URI"
    )


TokenCount = Annotated[int | None, Field(default=None, strict=True, ge=0, le=MAX_TOKENS)]
"""A token count: a whole number, never a float or a boolean (``7.0`` and ``true`` are refused,
so a sender's unit mistake is reported instead of silently rounded)."""


class Usage(_Strict):
    """Tokens of one call, as the OpenTelemetry GenAI conventions' ``gen_ai.usage.*`` count
    them; each may be absent (an embedding call has no output tokens)."""

    input_tokens: TokenCount = None
    output_tokens: TokenCount = None


class GenerationEvent(_Strict):
    """One model call. Unknown top-level fields are kept in ``attributes``."""

    event_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    timestamp: EventTimestamp
    model: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    model_version: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    prompt: Prompt = Prompt()
    output: Output = Output()
    app: str = Field(default="", max_length=MAX_LABEL_CHARS)
    release: str = Field(default="", max_length=MAX_LABEL_CHARS)
    latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    usage: Usage = Usage()
    feedback: Literal[-1, 0, 1] | None = None
    user_id: str | None = Field(default=None, max_length=MAX_LABEL_CHARS)
    session_id: str | None = Field(
        default=None,
        max_length=MAX_LABEL_CHARS,
        description="session or conversation; with user_id it makes repeats one independent unit",
    )
    attributes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)  # never mutate the caller's dict
        for alias, name in _OTEL_ALIASES.items():
            if alias in data and name not in data:
                data[name] = data.pop(alias)
        extra = {k: data.pop(k) for k in list(data) if k not in TOP_LEVEL_FIELDS}
        if extra:
            if not isinstance(data.get("attributes", {}), dict):
                return data  # validation reports the malformed attributes
            attributes = dict(data.get("attributes", {}))
            for key, value in extra.items():
                attributes.setdefault(
                    str(key), value if isinstance(value, str) else json.dumps(value)
                )
            data["attributes"] = attributes
        _promote_from_attributes(data, "user_id", USER_ID_KEYS)
        _promote_from_attributes(data, "session_id", SESSION_ID_KEYS)
        return data

    @model_validator(mode="after")
    def _has_content(self, info: ValidationInfo) -> GenerationEvent:
        # OTLP generation spans recorded without content still count for volume and latency:
        # their decoder validates with ``allow_empty`` (see ``validate_event``).
        if isinstance(info.context, dict) and info.context.get("allow_empty"):
            return self
        if not (self.prompt.text or self.output.text or self.output.image):
            raise ValueError("at least one of prompt.text, output.text, output.image is required")
        return self


def _promote_from_attributes(data: dict[str, Any], name: str, keys: tuple[str, ...]) -> None:
    """Fill a missing ``user_id`` / ``session_id`` from the first of ``keys`` in attributes."""
    if data.get(name) is not None or not isinstance(data.get("attributes"), dict):
        return
    for key in keys:
        value = data["attributes"].get(key)
        if isinstance(value, str) and value:
            data[name] = value
            return


Carried = dict[str, list[float] | list[list[float]]]
"""Vectors a record carries for its fields: one vector, or a text's window vectors
(``{"output.text": [...]}`` or ``{"output.text": [[...], [...]]}``)."""


def decode_event(raw: bytes | str, max_bytes: int = MAX_PAYLOAD_BYTES) -> GenerationEvent:
    """Parse and validate one JSON payload, or raise :class:`InvalidEvent` with the reason."""
    return decode_record(raw, max_bytes)[0]


def decode_record(
    raw: bytes | str, max_bytes: int = MAX_PAYLOAD_BYTES
) -> tuple[GenerationEvent, str, Carried]:
    """Like :func:`decode_event`, and also return vectors the payload carries.

    A payload may carry ``"embeddings": {"embedder_id": ID, "output.text": [...], ...}`` (the
    guardrail API records scored events this way, and pre-embedded logs look the same). The
    member is never part of the event; the result is ``(event, embedder_id, vectors)``, with
    ``("", {})`` when nothing usable is carried (a malformed member is ignored: the event is
    then embedded as usual).
    """
    try:
        size = len(raw.encode() if isinstance(raw, str) else raw)
    except UnicodeEncodeError as exc:  # a str holding lone surrogates has no UTF-8 form
        raise InvalidEvent(f"payload is not valid UTF-8: {exc}") from exc
    if size > max_bytes:
        raise InvalidEvent(f"payload of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"payload is not valid UTF-8: {exc}") from exc
    try:
        data = parse_json(text, finite=True)
    except JsonTooDeep:
        raise
    except ValueError as exc:
        raise InvalidEvent(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent(f"payload must be a JSON object, got {type(data).__name__}")
    carried = data.pop("embeddings", None)
    event = validate_event(data)
    embedder_id, vectors = _carried(carried)
    return event, embedder_id, vectors


def _carried(member: Any) -> tuple[str, Carried]:
    if not isinstance(member, dict) or not isinstance(member.get("embedder_id"), str):
        return "", {}
    vectors: Carried = {}
    for name, vector in member.items():
        if name not in FIELDS or not isinstance(vector, list) or not vector:
            continue
        if _numbers(vector):
            vectors[name] = [float(x) for x in vector]
        elif all(isinstance(w, list) and w and _numbers(w) for w in vector):
            vectors[name] = [[float(x) for x in w] for w in vector]  # the windows of a text
    return (member["embedder_id"], vectors) if vectors else ("", {})


def _numbers(values: list[Any]) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)


def _clip(key: str, limit: int = 80) -> str:
    """A sender's key as it appears in a reason: long ones are cut, not echoed whole."""
    return key if len(key) <= limit else f"{key[:limit]}…({len(key)} chars)"


def validate_event(data: dict[str, Any], *, allow_empty: bool = False) -> GenerationEvent:
    """Validate an already-parsed mapping, raising :class:`InvalidEvent` with every problem.

    ``allow_empty`` accepts an event without prompt or output (a generation whose content was
    not recorded, as OpenTelemetry instrumentations do by default): it is stored and counted,
    but nothing is embedded or scored. A mapping nested deeper than
    :data:`~streams._json.MAX_JSON_DEPTH` raises :class:`~streams.errors.JsonTooDeep` (an
    ``InvalidEvent``) before anything walks it recursively.
    """
    check_depth(data, MAX_JSON_DEPTH)
    try:
        return GenerationEvent.model_validate(data, context={"allow_empty": allow_empty})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(_clip(str(p)) for p in err['loc']) or 'event'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        # Locations hold the sender's keys: escape lone surrogates so the reason can always be
        # written into a dead letter or a reject file (both UTF-8).
        problems = problems.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InvalidEvent(f"invalid event: {problems}") from exc


def encode_event(event: GenerationEvent) -> bytes:
    """Serialise an event to the wire format (compact JSON, RFC 3339 UTC timestamp)."""
    return event.model_dump_json(exclude_defaults=True).encode()
