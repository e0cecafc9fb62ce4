"""Errors raised by the streaming layer.

Hierarchy::

    StreamError
    ├── InvalidEvent      a payload failed validation; it is dead-lettered with ``reason``
    └── EmitError         the Emitter could not deliver one or more events
"""

from __future__ import annotations

__all__ = ["EmitError", "InvalidEvent", "StreamError"]


class StreamError(Exception):
    """Root of every error raised by :mod:`streams`."""


class InvalidEvent(StreamError):
    """A payload that is not a valid generation event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmitError(StreamError):
    """One or more events could not be delivered to Kafka."""

    def __init__(self, message: str, failed: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.failed = failed
