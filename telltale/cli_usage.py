"""``telltale rates --usage``: tokens and cost per model version (and time bucket)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from telltale.cli_common import CLI_ERRORS, cli_settings, fail, open_client, parse_time, print_json

__all__ = ["usage_rates"]


def usage_rates(
    model: str | None,
    since: str | None,
    until: str | None,
    bucket: Any,
    clickhouse: str | None,
    fmt: str,
) -> None:
    """Print tokens and cost per (model, model_version), priced with ``TELLTALE_USAGE_PRICES``
    now (costs are never stored, so a changed price re-prices the past too)."""
    from storage import usage_by_version

    prices = cli_settings().usage.prices
    try:
        with open_client(clickhouse) as client:
            rows = usage_by_version(client, prices=prices, model=model, since=parse_time(since),
                                    until=parse_time(until), bucket=bucket)  # fmt: skip
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    docs = [r.as_dict() for r in rows]
    if fmt == "json":
        print_json({"usage": docs, "per_tokens": 1_000_000,
                    "priced": sorted({f"{d['model']} {d['model_version']}" for d in docs
                                      if d["cost"] is not None})})  # fmt: skip
        return
    table = Table("model", "version", "bucket", "events", "with usage", "input tokens",
                  "output tokens", "in/event", "out/event", "price in/out per 1M", "cost",
                  "cost/event")  # fmt: skip
    for d in docs:
        price = ("–" if d["input_per_1m"] is None
                 else f"{d['input_per_1m']:g} / {d['output_per_1m']:g}")  # fmt: skip
        table.add_row(
            d["model"], d["model_version"], d["bucket"] or "all", str(d["events"]),
            str(d["events_with_usage"]), str(d["input_tokens"]), str(d["output_tokens"]),
            _number(d["input_tokens_per_event"]), _number(d["output_tokens_per_event"]), price,
            _money(d["cost"]), _money(d["cost_per_event"]),
        )  # fmt: skip
    Console(width=220).print(table)
    if any(d["cost"] is None for d in docs):
        print("versions without a price show no cost: set TELLTALE_USAGE_PRICES")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:.6f}"
