"""``telltale rates``: failure rates per signal, model and version; by slice, corrected,
as negative feedback or as token usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    cli_settings,
    fail,
    open_client,
    parse_time,
    print_json,
)
from telltale.cli_usage import usage_rates
from telltale.sampled_rates import effective_for_correction, weigh_rates, weigh_slice_rates

__all__ = ["rates"]

Bucket = Literal["total", "minute", "hour", "day"]


def rates(
    signal: Annotated[str | None, typer.Option(help="only this signal")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339, exclusive")] = None,
    bucket: Annotated[Bucket, typer.Option(help="total, or a series by minute/hour/day")] = "total",
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="slice key (repeatable): rates per value, Wilson intervals"),
    ] = None,
    feedback: Annotated[
        bool,
        typer.Option("--feedback", help="negative user-feedback rate per app, model and version"),
    ] = False,
    corrected: Annotated[
        bool,
        typer.Option(
            "--corrected", help="also the failure rate corrected for each signal's audited errors"
        ),
    ] = False,
    usage: Annotated[
        bool,
        typer.Option(
            "--usage", help="tokens and cost per model and version (TELLTALE_USAGE_PRICES)"
        ),
    ] = False,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Failure rates per signal, model and model version (and per slice with ``--by``).

    A rate is how often a signal *fires*. With ``--corrected`` each row also carries
    ``corrected_rate`` and its 95 % interval ``corrected_low``/``corrected_high``: the failure
    rate with the signal's audited sensitivity and specificity taken out and their uncertainty
    put into the interval (``telltale signals audit``). Rows of signals without an audit say so.

    The built-in series ``feedback.negative`` is the share of events with user feedback whose
    feedback was negative; ``--feedback`` shows it per app, model and version instead.
    ``--usage`` shows tokens per model and version, priced with ``TELLTALE_USAGE_PRICES``.
    """
    from storage import failure_rates

    if usage:
        if by or corrected or feedback or signal:
            raise typer.BadParameter("--usage takes --model, --since, --until and --bucket")
        usage_rates(model, since, until, bucket, clickhouse, fmt)
        return
    if feedback:
        _feedback_rates(since, until, clickhouse, fmt)
        return
    if by:
        if bucket != "total":
            raise typer.BadParameter("--by gives totals; leave out --bucket")
        _slice_rates(by, signal, model, parse_time(since), parse_time(until), clickhouse, fmt,
                     corrected)  # fmt: skip
        return
    try:
        with open_client(clickhouse) as client:
            rows = failure_rates(
                client, signal=signal, model=model, since=parse_time(since),
                until=parse_time(until), bucket=bucket,
            )  # fmt: skip
            docs = [{**r.as_dict(), **_wilson(r.failures, r.events)} for r in rows]
            weigh_rates(client, docs, signal=signal, model=model, since=parse_time(since),
                        until=parse_time(until), bucket=bucket)  # fmt: skip
            if corrected:
                _add_corrected(client, docs, Span(bucket, model, parse_time(since),
                                                  parse_time(until)))  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"rates": docs})
        return
    columns = ["signal", "model", "version", "bucket", "events", "failures", "rate"]
    table = Table(*columns, *(["corrected (95%)"] if corrected else []))
    for d in docs:
        table.add_row(
            d["signal"], d["model"], d["model_version"], d["bucket"] or "all", str(d["events"]),
            _count(d["failures"]), f"{d['rate']:.2%}",
            *([_corrected_cell(d)] if corrected else []),
        )  # fmt: skip
    Console(width=200).print(table)


def _count(value: float) -> str:
    """A count as printed: whole, or an estimate to one decimal (a sampled row's failures)."""
    return str(value) if isinstance(value, int) else f"{value:.1f}"


def _wilson(failures: int, events: int) -> dict[str, float]:
    from alerts import wilson_interval

    low, high = wilson_interval(failures, events) if events else (0.0, 1.0)
    return {"rate_low": low, "rate_high": high}


@dataclass(frozen=True)
class Span:
    """How ``rates`` grouped its rows: by time bucket or slice keys, within filters."""

    by: Bucket | list[str]
    model: str | None
    since: datetime | None
    until: datetime | None


def _row_values(d: dict[str, Any], by: Bucket | list[str]) -> tuple[str, ...]:
    if isinstance(by, list):
        return tuple(d["values"])
    if by == "total":
        return ()
    return (datetime.fromisoformat(d["bucket"]).strftime("%Y-%m-%d %H:%M:%S"),)


def _add_corrected(client: Any, docs: list[dict[str, Any]], span: Span) -> None:
    """Add ``corrected_rate``/``_low``/``_high`` (and ``correction``) to each rate row.

    Each row's flag rate counts as many independent events as its contents are worth
    (``storage.effective_events``: retries of one answer share one flag)."""
    from storage import effective_events
    from telltale.signal_store import ClickHouseSignalStore
    from telltale.trust import load_errors_for, no_audit_fields

    audit = cli_settings().audit
    errors = load_errors_for(
        client, [d["signal"] for d in docs], min_version_labels=audit.min_version_labels,
        include_judge=audit.use_judge_labels,
    )  # fmt: skip
    fields = {s.name: s.field for s in ClickHouseSignalStore(client).latest()}
    worth: dict[tuple[str, str, str, tuple[str, ...]], float] = {}
    for name, found in errors.items():
        if found is not None and name in fields:
            worth |= effective_events(client, name, fields[name], by=span.by, model=span.model,
                                      since=span.since, until=span.until)  # fmt: skip
    for d in docs:
        found = errors[d["signal"]]
        key = (d["signal"], d["model"], d["model_version"], _row_values(d, span.by))
        effective = None if d.get("merged") else worth.get(key)  # merged cells: not grouped
        events, failures, effective = effective_for_correction(d, effective)
        d.update(
            no_audit_fields() if found is None
            else found.correct(d["model_version"], events, failures, effective_events=effective)
        )  # fmt: skip


def _corrected_cell(d: dict[str, Any]) -> str:
    if d["corrected_rate"] is None:
        return str(d["correction"]["note"])
    return f"{d['corrected_rate']:.2%} [{d['corrected_low']:.2%} – {d['corrected_high']:.2%}]"


def _slice_rates(
    keys: list[str],
    signal: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    clickhouse: str | None,
    fmt: str,
    corrected: bool = False,
) -> None:
    """``rates --by KEY...``: per slice (each key alone, then all keys together)."""
    from storage import slice_counts

    keys = list(dict.fromkeys(keys))
    groupings = [[k] for k in keys] + ([keys] if len(keys) > 1 else [])
    min_users = cli_settings().privacy.min_slice_users
    try:
        with open_client(clickhouse) as client:
            found = [
                (grouping, slice_counts(client, grouping, signal=signal, model=model,
                                        since=since, until=until, min_users=min_users))
                for grouping in groupings
            ]  # fmt: skip
            rows = _slice_rows(found, merged=min_users > 0)
            for grouping in groupings:
                weigh_slice_rates(client, [r for r in rows if r["by"] == grouping], grouping,
                                  signal=signal, model=model, since=since, until=until,
                                  min_users=min_users)  # fmt: skip
            if corrected:
                for grouping in groupings:
                    _add_corrected(client, [r for r in rows if r["by"] == grouping],
                                   Span(grouping, model, since, until))  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"by": keys, "interval": "wilson 95%", "min_slice_users": min_users,
                    "rates": rows})  # fmt: skip
        return
    table = Table("signal", "model", "version", "slice", "events", "failures", "rate",
                  "95% interval (Wilson)", *(["corrected (95%)"] if corrected else []))  # fmt: skip
    for r in rows:
        table.add_row(
            str(r["signal"]), str(r["model"]), str(r["model_version"]), str(r["slice"]),
            _count(r["events"]), _count(r["failures"]), f"{r['rate']:.2%}",
            f"{r['rate_low']:.2%} – {r['rate_high']:.2%}",
            *([_corrected_cell(r)] if corrected else []),
        )  # fmt: skip
    Console(width=220).print(table)
    if min_users:
        print(
            f"slices of fewer than {min_users} users are merged into 'other' "
            "(TELLTALE_PRIVACY_MIN_SLICE_USERS); an 'other' still under it is withheld"
        )


def _slice_rows(found: list[tuple[list[str], Any]], *, merged: bool) -> list[dict[str, Any]]:
    """Rate rows of slice counts (the scored events; :func:`weigh_slice_rates` then weighs the
    rows that hold sampled events); with ``merged``, an ``other`` row may hold small cells, so
    it is marked and its events count once each (:func:`_add_corrected`)."""
    from alerts import slice_label, wilson_interval
    from storage import OTHER_SLICE

    rows = []
    for grouping, counts in found:
        for c in counts:
            low, high = wilson_interval(c.failures, c.events)
            rows.append({
                "by": grouping, "values": list(c.values),
                "slice": slice_label(tuple(grouping), c.values), "signal": c.signal,
                "model": c.model, "model_version": c.model_version, "events": c.events,
                "scored": c.events,  # a sampled row's estimates: weigh_slice_rates
                "failures": c.failures, "rate": c.failures / c.events if c.events else 0.0,
                "rate_low": low, "rate_high": high,
                "merged": merged and all(v == OTHER_SLICE for v in c.values),
            })  # fmt: skip
    return rows


def _feedback_rates(since: str | None, until: str | None, clickhouse: str | None, fmt: str) -> None:
    from storage import feedback_summary

    try:
        with open_client(clickhouse) as client:
            rows = feedback_summary(client, since=parse_time(since), until=parse_time(until))
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"feedback": [r.as_dict() for r in rows]})
        return
    table = Table("app", "model", "version", "rated events", "negative", "rate")
    for r in rows:
        table.add_row(r.app, r.model, r.model_version, str(r.rated_events),
                      str(r.negative_events), f"{r.rate:.2%}")  # fmt: skip
    Console().print(table)
