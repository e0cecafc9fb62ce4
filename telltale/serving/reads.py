"""The read routes of ``telltale serve --all``: the live report at ``/`` (the static report
rendered on request, with a time range picker), ``/v1/rates`` and ``/v1/detections``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from telltale.serving.models import DetectionsResponse, RateOut, RatesResponse

if TYPE_CHECKING:
    from storage import PriceTable
    from telltale.serving.auth import Auth

__all__ = ["RANGES", "add_read_routes"]

RANGES: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
"""Choices of the report's time range picker."""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _window(
    range_: str | None, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    end = _utc(until) or datetime.now(UTC)
    if since is not None:
        start = _utc(since)
        assert start is not None
    else:
        start = end - RANGES.get(range_ or "24h", RANGES["24h"])
    if start >= end:
        raise StarletteHTTPException(422, "since must be before until")
    return start, end


def _picker(chosen: str | None, start: datetime, end: datetime) -> str:
    options = "".join(
        f'<option value="{name}"{" selected" if name == chosen else ""}>last {name}</option>'
        for name in RANGES
    )
    value = "%Y-%m-%dT%H:%M"
    window = (
        '<form method="get" action="/" style="display:inline;margin-left:16px">'
        f'<input type="datetime-local" name="since" value="{start:{value}}"> – '
        f'<input type="datetime-local" name="until" value="{end:{value}}"> UTC '
        '<button type="submit">apply</button></form>'
    )
    return (
        '<div style="margin-top:8px"><form method="get" action="/" style="display:inline">'
        f'<label>range <select name="range">{options}</select></label> '
        f'<button type="submit">show</button></form>{window}'
        ' &nbsp; <a href="/v1/detections" style="color:#9cf">detections (JSON)</a>'
        ' · <a href="/v1/rates" style="color:#9cf">rates (JSON)</a></div>'
    )


def add_read_routes(
    app: FastAPI,
    auth: Auth,
    client: Any,
    source: str,
    min_slice_users: int = 0,
    prices: PriceTable | None = None,
) -> None:
    """Add the report, rates and detections of the database behind ``client`` to ``app``;
    ``source`` names it on the report; the dashboards' SQL is built with the small-cell bound
    and the price table in effect."""

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(auth)])
    def report(
        range_: Annotated[
            Literal["15m", "1h", "6h", "24h", "7d", "30d"] | None,
            Query(alias="range", description="a window ending now (default 24h)"),
        ] = None,
        since: Annotated[datetime | None, Query(description="start (UTC); overrides range")] = None,
        until: Annotated[datetime | None, Query(description="end (UTC); default now")] = None,
    ) -> HTMLResponse:
        """The report of every dashboard panel, rendered now from the live database."""
        from dashboards import QueryContext, build_dashboards, build_report, interval_for, view

        start, end = _window(range_, since, until)
        dashboards = build_dashboards(min_slice_users, prices)
        ctx = QueryContext(
            start=start, end=end, interval_s=interval_for(start, end),
            variables={"app": None, "model": None, "version": None, "signal": None,
                       "slice_key": None},
        )  # fmt: skip
        chosen = range_ if since is None else None
        result = build_report(
            client, [view(d) for d in dashboards], ctx, source=source,
            generated_at=datetime.now(UTC), controls=_picker(chosen, start, end),
        )  # fmt: skip
        return HTMLResponse(result.html)

    @app.get("/v1/rates", response_model=RatesResponse, dependencies=[Depends(auth)])
    def rates(
        signal: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: Literal["total", "minute", "hour", "day"] = "total",
    ) -> RatesResponse:
        """Failure rates per signal, model and version (optionally per time bucket)."""
        from storage import failure_rates

        rows = failure_rates(client, signal=signal, model=model, since=_utc(since),
                             until=_utc(until), bucket=bucket)  # fmt: skip
        return RatesResponse(rates=[RateOut(**r.as_dict()) for r in rows])

    @app.get("/v1/detections", response_model=DetectionsResponse, dependencies=[Depends(auth)])
    def detections(
        state: Literal["open", "resolved", "all"] = "all",
        detector: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> DetectionsResponse:
        """Detections the monitor opened, newest first."""
        from storage import list_detections

        rows = list_detections(client, state=state, detector=detector, since=_utc(since),
                               until=_utc(until), limit=limit)  # fmt: skip
        return DetectionsResponse(detections=[r.as_dict() for r in rows])
