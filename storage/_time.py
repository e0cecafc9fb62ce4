"""Timestamps at the storage boundary: every value bound into SQL or read back is UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc", "require_utc"]


def require_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive timestamp is refused (callers must say which zone they mean)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive timestamp is taken as UTC (what ClickHouse hands back)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
