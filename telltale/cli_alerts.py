"""``telltale monitor`` and the ``telltale alerts`` group (``list``, ``backtest``).

Wired into the main app by ``telltale.cli``::

    app.command()(monitor)
    app.add_typer(alerts_app, name="alerts")

Settings are the invocation's (``cli_settings``: ``TELLTALE_MONITOR_*``, ``TELLTALE_NOTIFY_*``;
see :mod:`alerts.settings`); ``--clickhouse`` and ``--interval`` override theirs.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from alerts import AlertError
from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    cli_settings,
    console,
    fail,
    open_client,
    parse_time,
    print_json,
)
from telltale.trust import release_instrument

__all__ = ["alerts_app", "alerts_backtest", "alerts_list", "monitor"]

alerts_app = typer.Typer(
    help="Detections: list them, backtest the detectors over history.", no_args_is_help=True
)

_ERRORS = (*CLI_ERRORS, AlertError)


def monitor(
    once: Annotated[bool, typer.Option("--once", help="run one cycle and exit")] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", min=1.0, help="seconds between cycles [env TELLTALE_MONITOR_INTERVAL_S]"
        ),
    ] = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Run the detectors on a schedule: release spikes, slow degradation, prompt drift."""
    from alerts import Monitor
    from telltale.wiring import make_notifier

    settings = cli_settings().monitor
    if interval is not None:
        settings = settings.model_copy(update={"interval_s": interval})
    notify = cli_settings().notify
    stop = threading.Event()
    try:
        with open_client(clickhouse) as client:
            try:
                # Back-off waits on the stop event, so SIGTERM never waits out a retry delay.
                notifier = make_notifier(cli_settings(), client, stop.wait)
            except ValueError as exc:
                raise fail(exc) from exc
            audit = cli_settings().audit
            instrument = release_instrument(client, min_version_labels=audit.min_version_labels,
                                            include_judge=audit.use_judge_labels)  # fmt: skip
            runner = Monitor(client, settings, notifier, notify, instrument=instrument,
                             prices=cli_settings().usage.prices)  # fmt: skip
            if once:
                report = runner.run_once()
                if fmt == "json":
                    print_json(report.as_dict())
                else:
                    console.print(report.as_dict())
                return
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            console.print(
                f"monitor running every {settings.interval_s:g} s"
                f" (notifiers: {repr(notifier) if notifier else 'off'}); Ctrl-C stops"
            )
            runner.run(stop)
    except _ERRORS as exc:
        raise fail(exc) from exc


@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        Literal["open", "resolved", "all"], typer.Option(help="open, resolved or all")
    ] = "all",
    detector: Annotated[
        str | None, typer.Option(help="release_spike, degradation or prompt_drift")
    ] = None,
    since: Annotated[str | None, typer.Option(help="opened at or after, RFC 3339")] = None,
    until: Annotated[str | None, typer.Option(help="opened before, RFC 3339")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Detections the monitor opened, newest first; the signals it skips (degenerate) and why;
    the ingest lag of the last hour (its p99 is how long the monitor lets a minute settle)."""
    from datetime import UTC, datetime

    from storage import degenerate_signals, ingest_lag, list_detections

    try:
        with open_client(clickhouse) as client:
            rows = list_detections(
                client, state=state, detector=detector, since=parse_time(since),
                until=parse_time(until), limit=limit,
            )  # fmt: skip
            skipped = degenerate_signals(client)
            lag = ingest_lag(client, datetime.now(UTC))
    except _ERRORS as exc:
        raise fail(exc) from exc
    documents = [r.as_dict() for r in rows]
    skipped_docs = [{"signal": name, "reason": reason} for name, reason in skipped.items()]
    if fmt == "json":
        print_json({"detections": documents, "skipped_signals": skipped_docs,
                    "ingest_lag": lag.as_dict()})  # fmt: skip
        return
    _print_table(documents, with_notified=True)
    for doc in skipped_docs:
        console.print(f"not monitored: signal {doc['signal']} is degenerate ({doc['reason']})")
    p99 = "n/a" if lag.p99_s is None else f"{lag.p99_s:.1f} s"
    console.print(f"ingest lag, last hour: p99 {p99} over {lag.events} events")


@alerts_app.command("backtest")
def alerts_backtest(
    since: Annotated[
        str | None, typer.Option(help="RFC 3339, inclusive (default: first data)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="RFC 3339, exclusive (default: last data)")
    ] = None,
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """What the detectors would have fired over stored history, and when; sends nothing."""
    from alerts import backtest

    try:
        with open_client(clickhouse) as client:
            audit = cli_settings().audit
            instrument = release_instrument(client, min_version_labels=audit.min_version_labels,
                                            include_judge=audit.use_judge_labels)  # fmt: skip
            report = backtest(client, cli_settings().monitor, parse_time(since), parse_time(until),
                              instrument=instrument,
                              prices=cli_settings().usage.prices)  # fmt: skip
    except _ERRORS as exc:
        raise fail(exc) from exc
    document = report.as_dict()
    if fmt == "json":
        print_json(document)
        return
    console.print(
        f"backtest {document['since']} → {document['until']}: {document['fired'] or 'nothing'} "
        f"would have fired; {document['drift_windows']} drift windows "
        f"({document['duration_s']:.1f} s)"
    )
    _print_table(document["detections"], with_notified=False)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _print_table(documents: list[dict[str, Any]], *, with_notified: bool) -> None:
    columns = ["detector", "model", "version", "signal", "opened", "resolved", "statistic",
               "threshold", "effect [low, high]"]  # fmt: skip
    if with_notified:
        columns.append("notified")
    else:
        columns.append("delay (min)")
    table = Table(*columns)
    for d in documents:
        effect = _fmt(d["effect"], "+.4f")
        if d["effect_low"] is not None and d["effect_high"] is not None:
            effect += f" [{d['effect_low']:+.4f}, {d['effect_high']:+.4f}]"
        last = d["notified"] if with_notified else _fmt(d.get("delay_minutes"), ".0f")
        table.add_row(
            d["detector"], d["model"], d["model_version"], d["signal"], d["opened_at"],
            d["resolved_at"] or "", _fmt(d["statistic"], ".4g"), _fmt(d["threshold"], ".4g"),
            effect, last,
        )  # fmt: skip
    Console().print(table)


@alerts_app.command("receiver")
def alerts_receiver(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
) -> None:
    """Receive Grafana's alert webhooks (logged, one line per alert) and serve the runbooks."""
    from alerts import Receiver

    receiver = Receiver(host, port)
    console.print(f"alert receiver on http://{host}:{receiver.port}/ (runbooks at /runbooks)")

    def _stop(*_: object) -> None:
        threading.Thread(target=receiver.shutdown, daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    receiver.serve_forever()
