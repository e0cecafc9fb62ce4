"""The ``telltale`` command line: one Typer app, a subcommand per job.

Every command takes ``--clickhouse DSN`` (env ``TELLTALE_CLICKHOUSE_DSN``); those that use Kafka
take ``--kafka HOST:PORT`` (env ``TELLTALE_KAFKA_BOOTSTRAP``); those that report take
``--format json`` and then print exactly one JSON document on stdout.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from telltale.cli_alerts import alerts_app, monitor
from telltale.cli_audit import audit
from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    KafkaOpt,
    cli_settings,
    console,
    fail,
    open_client,
    parse_time,
    print_json,
    settings_for,
)
from telltale.cli_dashboards import alerts_push, dashboards_app, report
from telltale.cli_privacy import forget
from telltale.cli_signals import signals_app
from telltale.cli_usage import usage_rates

app = typer.Typer(
    name="telltale",
    help="Monitor the quality of generative-AI products in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
releases_app = typer.Typer(help="Record model releases.", no_args_is_help=True)
app.add_typer(signals_app, name="signals")
app.add_typer(releases_app, name="releases")
app.add_typer(alerts_app, name="alerts")
app.add_typer(dashboards_app, name="dashboards")
alerts_app.command("push")(alerts_push)
signals_app.command("audit")(audit)
app.command()(monitor)
app.command("report")(report)
app.command("forget")(forget)

Bucket = Literal["total", "minute", "hour", "day"]


_OWN_LOGGERS = ("signals", "streams", "storage", "alerts", "dashboards", "telltale")


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    # telltale's own loggers at INFO; libraries (open_clip logs every step of loading a model
    # on the root logger) only from WARNING up, unless --verbose asks for everything.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    # Settings are read from the environment once, on first use (cli_settings keeps them on this
    # root context), so `--help` still works while a variable holds a bad value.


@app.command()
def migrate(clickhouse: ClickHouseOpt = None, fmt: FormatOpt = "text") -> None:
    """Create or update the ClickHouse schema and each table's retention (idempotent)."""
    from storage import current_retention
    from storage import migrate as run_migrations

    settings = settings_for(clickhouse)
    cluster = settings.clickhouse.cluster
    try:
        with open_client(clickhouse, migrated=False) as client:
            applied = run_migrations(client, cluster=cluster, retention=settings.retention.days())
            kept = current_retention(client, cluster=cluster)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"applied": [m.version for m in applied], "retention_days": kept})
    else:
        console.print(f"applied {len(applied)} migration(s)" if applied else "schema is current")
        kept_for = (
            f"{table} {days} days" if days else f"{table} for ever" for table, days in kept.items()
        )
        console.print("retention: " + ", ".join(kept_for))


@app.command()
def worker(clickhouse: ClickHouseOpt = None, kafka: KafkaOpt = None) -> None:
    """Run the stream worker: Kafka topic → embed → signals → ClickHouse."""
    import faust

    from telltale.wiring import make_worker_app

    settings = settings_for(clickhouse, kafka)
    try:
        faust_app = make_worker_app(settings)
    except CLI_ERRORS as exc:  # a refused password or certificate: say so, consume nothing
        raise fail(exc) from exc
    faust.Worker(faust_app, loglevel=settings.worker.log_level.upper()).execute_from_commandline()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="[env TELLTALE_SERVE_HOST, 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="[env TELLTALE_SERVE_PORT, 8000]")
    ] = None,
    all_in_one: Annotated[
        bool, typer.Option("--all", help="also run the worker, the monitor and the live report")
    ] = False,
    clickhouse: ClickHouseOpt = None,
    kafka: KafkaOpt = None,
) -> None:
    """The guardrail API (POST /v1/score); with --all the whole job in one process."""
    from telltale.serving import serve as run_server

    settings = settings_for(clickhouse, kafka)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        serve_settings = settings.serve.model_copy(update=overrides)
        settings = settings.model_copy(update={"serve": serve_settings})
    try:
        run_server(settings, all_in_one=all_in_one)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc


@app.command()
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
            str(d["failures"]), f"{d['rate']:.2%}",
            *([_corrected_cell(d)] if corrected else []),
        )  # fmt: skip
    Console(width=200).print(table)


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
        d.update(
            no_audit_fields() if found is None
            else found.correct(d["model_version"], d["events"], d["failures"],
                               effective_events=effective)
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
            str(r["events"]),
            str(r["failures"]), f"{r['rate']:.2%}", f"{r['rate_low']:.2%} – {r['rate_high']:.2%}",
            *([_corrected_cell(r)] if corrected else []),
        )  # fmt: skip
    Console(width=220).print(table)
    if min_users:
        print(
            f"slices of fewer than {min_users} users are merged into 'other' "
            "(TELLTALE_PRIVACY_MIN_SLICE_USERS); an 'other' still under it is withheld"
        )


def _slice_rows(found: list[tuple[list[str], Any]], *, merged: bool) -> list[dict[str, Any]]:
    """Rate rows of slice counts; with ``merged``, an ``other`` row may hold small cells, so
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
                "failures": c.failures, "rate": c.failures / c.events if c.events else 0.0,
                "rate_low": low, "rate_high": high,
                "merged": merged and all(v == OTHER_SLICE for v in c.values),
            })  # fmt: skip
    return rows


@app.command()
def discover(
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339; default 24 h before --until")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339; default the end of the data")] = None,
    field: Annotated[
        Literal["output.text", "output.image", "prompt.text"], typer.Option(help="embedding field")
    ] = "output.text",
    top: Annotated[int, typer.Option(min=1, max=100, help="clusters to list")] = 10,
    sample: Annotated[int, typer.Option(min=50, help="embeddings per window")] = 3000,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Clusters of recent outputs, ranked by distance from the bulk and growth of share."""
    from telltale.discover import DiscoveryOptions, as_dict
    from telltale.discover import discover as run_discover

    options = DiscoveryOptions(field=field, top=top, sample=sample)
    try:
        with open_client(clickhouse) as client:
            found = run_discover(client, model=model, since=parse_time(since),
                                 until=parse_time(until), options=options)  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"clusters": [as_dict(c) for c in found]})
        return
    if not found:
        console.print("no clusters: too few embeddings in the window")
        return
    table = Table("rank", "cluster", "model", "size", "share now", "share before", "growth",
                  "distance", "examples", "signals (flagged share)")  # fmt: skip
    for c in found:
        flagged = ", ".join(f"{name} {v['flagged_share']:.0%}"
                            for name, v in sorted(c.signal_scores.items()))  # fmt: skip
        table.add_row(
            str(c.rank), c.cluster_id, c.model, str(c.size), f"{c.recent_share:.1%}",
            f"{c.reference_share:.1%}", f"{c.growth:+.2f}", f"{c.distance:.2f}",
            "\n".join(t[:90] for t in c.example_texts), flagged,
        )  # fmt: skip
    Console(width=220).print(table)
    console.print("start a signal from one: telltale signals add --from-cluster ID NAME")


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


@releases_app.command("add")
def releases_add(
    model: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    at: Annotated[str, typer.Option("--at", help="RFC 3339 time of the release")],
    note: Annotated[str, typer.Option(help="free text")] = "",
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Record that MODEL VERSION was released at a time."""
    from storage import add_release

    when = parse_time(at)
    if when is None:  # pragma: no cover - typer requires --at
        raise typer.BadParameter("--at is required")
    try:
        with open_client(clickhouse) as client:
            add_release(client, model, version, when, source="manual", note=note)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"model": model, "model_version": version, "released_at": when.isoformat()})
    else:
        console.print(f"release {model} {version} recorded at {when.isoformat()}")


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", exists=True, dir_okay=False)],
    to_kafka: Annotated[bool, typer.Option("--to-kafka", help="send through Kafka")] = False,
    speed: Annotated[str, typer.Option(help="'max' or N times real time")] = "max",
    since: Annotated[str | None, typer.Option(help="RFC 3339, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339, exclusive")] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=SOURCE.PATH for logs with other field names"),
    ] = None,
    reject_file: Annotated[Path, typer.Option(help="where invalid records go")] = Path(
        "replay.rejects.jsonl"
    ),
    checkpoint: Annotated[
        Path, typer.Option(help="resume point per file, written after each batch")
    ] = Path(".telltale/replay.checkpoint.json"),
    restart: Annotated[bool, typer.Option(help="ignore the checkpoint")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    feedback: Annotated[
        bool,
        typer.Option("--feedback", help="the files hold feedback records, not events"),
    ] = False,
    clickhouse: ClickHouseOpt = None,
    kafka: KafkaOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Replay JSONL (plain or gzip) and Parquet logs through the pipeline, keeping timestamps."""
    from streams import parse_mapping
    from telltale.replay import replay_feedback, replay_files

    if feedback:
        try:
            summary = replay_feedback(
                settings_for(clickhouse, kafka), files, to_kafka=to_kafka,
                reject_file=reject_file, batch_size=batch_size,
            )  # fmt: skip
        except CLI_ERRORS as exc:
            raise fail(exc) from exc
        if fmt == "json":
            print_json(summary)
        else:
            console.print(summary)
        return

    if speed != "max":
        try:
            if float(speed) <= 0:
                raise ValueError
        except ValueError as exc:
            raise typer.BadParameter("--speed must be 'max' or a positive number") from exc
    try:
        fields = parse_mapping(mapping or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if restart and checkpoint.exists():
        checkpoint.unlink()
    try:
        report = replay_files(
            settings_for(clickhouse, kafka), files, to_kafka=to_kafka, speed=speed,
            reject_file=reject_file, checkpoint_file=checkpoint, mapping=fields,
            since=parse_time(since), until=parse_time(until), batch_size=batch_size,
            console=console, show_progress=fmt != "json",
        )  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json(report)
    else:
        console.print(report)


@app.command()
def demo(
    clickhouse: ClickHouseOpt = None,
    events: Annotated[int, typer.Option(help="events per model version", min=20)] = 150,
    fmt: FormatOpt = "text",
) -> None:
    """The whole job on embedded defaults and generated sample data."""
    from telltale.demo import run_demo

    dsn = clickhouse or "chdb://./.telltale/demo-db"
    try:
        report = run_demo(dsn, events_per_version=events, console=console, settings=cli_settings())
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json(report)


if __name__ == "__main__":  # pragma: no cover
    app()
