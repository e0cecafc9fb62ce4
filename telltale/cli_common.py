"""What every ``telltale`` command shares: settings, connection options, output, errors, time
parsing.

Command modules (``cli``, ``cli_signals``, ...) import these so the CLI contract stays uniform:
``--clickhouse DSN`` everywhere, ``--kafka HOST:PORT`` where Kafka is used, ``--format json``
printing exactly one JSON document on stdout, and a clear one-line error with exit code 1.
Settings are read from the environment once per invocation (:func:`cli_settings`, called by
the app's callback) and kept on the root context; ``--clickhouse``/``--kafka`` override them
for one command (:func:`settings_for`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import click
import typer
from rich.console import Console

from signals import SignalError
from storage import StorageError
from streams import StreamError
from telltale.settings import Settings, SettingsError, load_settings

__all__ = [
    "CLI_ERRORS",
    "ClickHouseOpt",
    "FormatOpt",
    "KafkaOpt",
    "cli_settings",
    "console",
    "fail",
    "open_client",
    "parse_time",
    "print_json",
    "settings_for",
]

console = Console(stderr=True)

ClickHouseOpt = Annotated[
    str | None,
    typer.Option(
        "--clickhouse",
        help="ClickHouse DSN [env TELLTALE_CLICKHOUSE_DSN]",
        show_default="chdb://./.telltale/db",
    ),
]
KafkaOpt = Annotated[
    str | None,
    typer.Option("--kafka", help="Kafka bootstrap HOST:PORT [env TELLTALE_KAFKA_BOOTSTRAP]"),
]
FormatOpt = Annotated[
    Literal["text", "json"], typer.Option("--format", help="text for people, json for scripts")
]
CLI_ERRORS = (SignalError, StorageError, StreamError)


def cli_settings() -> Settings:
    """The settings of this invocation, read from the environment once and kept on the root
    context on first use, so every command of one invocation sees the same tree and `--help`
    never reads it. A bad variable is a one-line error naming it, with exit code 1."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, Settings):
        return root.obj
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(exc) from exc
    if root is not None:
        root.obj = settings
    return settings


def settings_for(clickhouse: str | None = None, kafka: str | None = None) -> Settings:
    """:func:`cli_settings` with this command's ``--clickhouse`` / ``--kafka`` overrides."""
    return cli_settings().with_overrides(clickhouse=clickhouse, kafka=kafka)


@contextmanager
def open_client(clickhouse: str | None, *, migrated: bool = True) -> Iterator[Any]:
    """A ClickHouse client for one command, closed afterwards (chDB allows one path per process)."""
    from telltale.wiring import make_client

    client = make_client(settings_for(clickhouse).clickhouse, migrated=migrated)
    try:
        yield client
    finally:
        client.close()


def fail(exc: BaseException) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an RFC 3339 timestamp") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")
