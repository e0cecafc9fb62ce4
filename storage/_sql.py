"""Small pieces of parameterised SQL shared by the read queries."""

from __future__ import annotations

from typing import Any

__all__ = ["add_equal_filters"]


def add_equal_filters(where: list[str], params: dict[str, Any], **columns: str | None) -> None:
    """Append ``column = {column:String}`` to ``where`` for each column given a value (``None``:
    no filter), binding the value in ``params``. Column names come from code, never from users."""
    for column, value in columns.items():
        if value is not None:
            where.append(f"{column} = {{{column}:String}}")
            params[column] = value
