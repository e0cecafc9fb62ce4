"""Delayed user feedback: a thumbs up/down or a rating on an event, minutes or days later.

Applications send one :class:`Feedback` per judgement to ``generations.feedback``
(:meth:`streams.emitter.Emitter.feedback`), or replay them from logs. ``value`` is -1, 0 or +1;
a rating (for example 1–5 stars) is kept as given and mapped to a value by ``rating_scale``:
the lowest third is -1, the highest third +1.

The ``feedback_id`` makes a re-sent record the same record: given by the sender, or derived
from event, user, kind and timestamp. Feedback that arrives before its event is stored all
the same and joined when the event arrives (``storage.feedback``).

>>> record = decode_feedback(
...     b'{"event_id": "e1", "value": -1, "timestamp": "2026-11-01T10:00:00Z"}')
>>> record.value, len(record.feedback_id)
(-1, 32)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.errors import InvalidEvent, JsonTooDeep
from streams.events import EventTimestamp

__all__ = ["Feedback", "decode_feedback", "encode_feedback", "validate_feedback"]

MAX_FEEDBACK_BYTES = 64 * 1024


class Feedback(BaseModel):
    """One user judgement of one event."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=10_000)

    event_id: str = Field(min_length=1, max_length=256)
    value: Literal[-1, 0, 1] | None = None
    rating: float | None = Field(default=None, allow_inf_nan=False)
    rating_scale: tuple[float, float] = (1.0, 5.0)
    kind: str = Field(default="thumbs", max_length=64, description="thumbs, rating, flag, ...")
    user_id: str = Field(default="", max_length=512)
    timestamp: EventTimestamp
    comment: str = ""
    feedback_id: str = Field(default="", max_length=256)

    @model_validator(mode="after")
    def _value_and_id(self) -> Feedback:
        low, high = self.rating_scale
        if self.value is None:
            if self.rating is None:
                raise ValueError("one of value (-1/0/1) or rating is required")
            if not low < high or not low <= self.rating <= high:
                raise ValueError(f"rating {self.rating} is outside its scale [{low}, {high}]")
            third = (high - low) / 3
            value = -1 if self.rating < low + third else 1 if self.rating > high - third else 0
            object.__setattr__(self, "value", value)
        if not self.feedback_id:
            key = json.dumps(
                [self.event_id, self.user_id, self.kind, self.timestamp.isoformat()]
            ).encode()
            object.__setattr__(self, "feedback_id", hashlib.sha256(key).hexdigest()[:32])
        return self

    @property
    def score(self) -> int:
        """The judgement as -1, 0 or +1 (``value`` is always set after validation)."""
        return int(self.value or 0)


def validate_feedback(data: dict[str, Any]) -> Feedback:
    """Validate an already-parsed mapping, raising :class:`InvalidEvent` with every problem
    (:class:`~streams.errors.JsonTooDeep` when it nests deeper than the limit)."""
    check_depth(data, MAX_JSON_DEPTH)
    try:
        return Feedback.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p)[:80] for p in err['loc']) or 'feedback'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        problems = problems.encode("utf-8", "backslashreplace").decode("utf-8")
        raise InvalidEvent(f"invalid feedback: {problems}") from exc


def decode_feedback(raw: bytes | str) -> Feedback:
    """Parse one feedback record, or raise :class:`InvalidEvent` with the reason."""
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > MAX_FEEDBACK_BYTES:
        raise InvalidEvent(f"feedback of {size} bytes exceeds {MAX_FEEDBACK_BYTES} bytes")
    try:
        data = parse_json(raw)
    except JsonTooDeep:
        raise
    except ValueError as exc:
        raise InvalidEvent(f"feedback is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent(f"feedback must be a JSON object, got {type(data).__name__}")
    return validate_feedback(data)


def encode_feedback(feedback: Feedback) -> bytes:
    return feedback.model_dump_json().encode()
