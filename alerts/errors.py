"""Errors raised by the monitor and the notifier.

Hierarchy::

    AlertError
    └── NotifyError   a webhook delivery failed for good (retries exhausted, or a 4xx answer)

Messages never contain the webhook URL or a routing key: both are secrets.
"""

from __future__ import annotations

__all__ = ["AlertError", "NotifyError"]


class AlertError(Exception):
    """Root of every error raised by the monitor, the notifier and the backtest."""


class NotifyError(AlertError):
    """A notification could not be delivered. ``retryable`` is false for a rejected request
    (a 4xx answer other than 429), which will not succeed by sending it again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
