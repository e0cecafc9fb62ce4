"""Small pieces of parameterised SQL shared by the read queries."""

from __future__ import annotations

from typing import Any

__all__ = ["add_equal_filters", "bucket_start"]

_BUCKET_START = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}


def add_equal_filters(where: list[str], params: dict[str, Any], **columns: str | None) -> None:
    """Append ``column = {column:String}`` to ``where`` for each column given a value (``None``:
    no filter), binding the value in ``params``. Column names come from code, never from users."""
    for column, value in columns.items():
        if value is not None:
            where.append(f"{column} = {{{column}:String}}")
            params[column] = value


def bucket_start(bucket: str, column: str) -> str:
    """The start of ``column``'s time bucket (``minute``, ``hour``, ``day``) as a UTC
    ``DateTime``; one constant for ``total``. ``column`` comes from code, never from users."""
    start = _BUCKET_START.get(bucket)
    return f"toDateTime({start}({column}), 'UTC')" if start else "toDateTime(0, 'UTC')"
