"""Errors raised by the streaming layer.

Hierarchy::

    StreamError
    ├── InvalidEvent      a payload failed validation; it is dead-lettered with ``reason``
    │   ├── PartlyInvalid some events of a record are valid (stored), the rest are not
    │   └── JsonTooDeep   JSON nested deeper than the limit (also a ``ValueError``)
    ├── EmitError         the Emitter could not deliver one or more events
    └── ExportMisconfigured  the OpenTelemetry export's settings contradict the worker's
                          (also a ``ValueError``)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EmitError",
    "ExportMisconfigured",
    "InvalidEvent",
    "JsonTooDeep",
    "PartlyInvalid",
    "StreamError",
]


class StreamError(Exception):
    """Root of every error raised by :mod:`streams`."""


class InvalidEvent(StreamError):
    """A payload that is not a valid generation event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PartlyInvalid(InvalidEvent):
    """Some of a record's events are invalid (an OTLP export batch); ``events`` holds the valid
    ones, which are stored, while the record is dead-lettered with ``reason``."""

    def __init__(self, events: list[Any], reason: str) -> None:
        super().__init__(reason)
        self.events = events


class JsonTooDeep(InvalidEvent, ValueError):
    """JSON text or a decoded value nested deeper than ``limit`` levels (``streams._json``).

    An :class:`InvalidEvent` (dead-lettered, rejected or answered 4xx like any other bad
    payload) and a ``ValueError``, so code written around ``json.loads`` catches it too.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


class EmitError(StreamError):
    """One or more events could not be delivered to Kafka."""

    def __init__(self, message: str, failed: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.failed = failed


class ExportMisconfigured(StreamError, ValueError):
    """The OpenTelemetry export would write where the worker reads (its own input topics)."""
