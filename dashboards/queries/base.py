"""What every named query is built from: the query record and the template-variable filters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NamedQuery", "any_selected", "app_models", "event_filters", "rate_filters"]


@dataclass(frozen=True)
class NamedQuery:
    """A SQL statement, its stable name, and the columns it returns, in order."""

    name: str
    sql: str
    columns: tuple[str, ...]


def any_selected(column: str, variable: str) -> str:
    """``column`` restricted to the selected values of ``variable``; no restriction on All."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


def app_models(model_column: str) -> str:
    """Restrict models to those an app served (tables without an ``app`` column)."""
    sub = "SELECT DISTINCT model FROM events_1m WHERE app IN (${app:singlequote})"
    return f"$__conditionalAll({model_column} IN ({sub}), $app)"


def rate_filters(prefix: str = "") -> str:
    """The model, version, signal and app variables' filters (columns under ``prefix``)."""
    return " AND ".join(
        (
            any_selected(f"{prefix}model", "model"),
            any_selected(f"{prefix}model_version", "version"),
            any_selected(f"{prefix}signal", "signal"),
            app_models(f"{prefix}model"),
        )
    )


_EVENT_FILTERS = " AND ".join(
    (
        any_selected("app", "app"),
        any_selected("model", "model"),
        any_selected("model_version", "version"),
    )
)


def event_filters() -> str:
    """The app, model and version variables' filters, for tables with those three columns."""
    return _EVENT_FILTERS
