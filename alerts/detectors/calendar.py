"""The one calendar the detectors share: which days are weekend days, and hour × day type."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, timedelta

__all__ = ["WEEKEND_DAYS", "hour_and_day_type", "is_weekend", "like_with_like_lags"]

WEEKEND_DAYS: tuple[int, ...] = (5, 6)
"""Weekday numbers (Monday = 0, UTC) of the weekend days: Saturday and Sunday."""


def is_weekend(day: date, weekend_days: Collection[int] = WEEKEND_DAYS) -> bool:
    """Whether ``day`` (a date, or a datetime's weekday as given) is a weekend day."""
    return day.weekday() in weekend_days


def hour_and_day_type(
    at: datetime, weekend_days: Collection[int] = WEEKEND_DAYS
) -> tuple[int, int]:
    """The hour of day (UTC) and day type (0 weekday, 1 weekend day) of ``at``."""
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    utc = at.astimezone(UTC)
    return utc.hour, int(is_weekend(utc, weekend_days))


def like_with_like_lags(
    minute: datetime, lags_minutes: Sequence[int], weekend_days: Collection[int] = WEEKEND_DAYS
) -> list[int]:
    """The lags (in order) that land ``minute`` on a day of the same weekday type.

    A weekday is compared with a weekday and a weekend day with a weekend day, never across:
    traffic and failure rates differ between the two. Multiples of a week always qualify.

    >>> monday = datetime(2026, 11, 9, 10, 0)
    >>> like_with_like_lags(monday, [10_080, 1_440, 2_880, 4_320], weekend_days=(5, 6))
    [10080, 4320]
    """
    weekend = is_weekend(minute, weekend_days)
    return [
        lag
        for lag in lags_minutes
        if is_weekend(minute - timedelta(minutes=lag), weekend_days) == weekend
    ]
