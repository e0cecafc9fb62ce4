"""The ``telltale`` command line: one Typer app, a subcommand per job.

Every command takes ``--clickhouse DSN`` (env ``TELLTALE_CLICKHOUSE_DSN``); those that use Kafka
take ``--kafka HOST:PORT`` (env ``TELLTALE_KAFKA_BOOTSTRAP``); those that report take
``--format json`` and then print exactly one JSON document on stdout.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Literal

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
from telltale.cli_rates import rates
from telltale.cli_signals import signals_app

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
app.command()(rates)
app.command("report")(report)
app.command("forget")(forget)


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
