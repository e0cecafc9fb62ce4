"""Tokens and what they cost, per model and version: the price table and the read of ``usage_1m``.

Costs are never stored. ``usage_1m`` (migration 17) keeps token sums per minute; a
:class:`PriceTable` (``TELLTALE_USAGE_PRICES``) turns them into money when they are read, so a
corrected or changed price re-prices all of history at once. The same table prices the CLI
(:func:`usage_by_version`) and the dashboards (:meth:`PriceTable.sql`, a constant built into the
panel's SQL), and a test checks that the two agree.

>>> table = PriceTable.parse("gpt-4o=2.5:10")
>>> table.lookup("gpt-4o", "gpt-4o-2024-08-06").cost(1_000_000, 100_000)
3.5
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storage._sql import add_equal_filters, bucket_start
from storage._time import as_utc
from storage.queries import Bucket

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["PER_TOKENS", "Price", "PriceTable", "UsageRow", "usage_by_version"]

PER_TOKENS = 1_000_000
"""Prices are per this many tokens (providers quote per 1M)."""

# Names a price may carry. They are written into dashboard SQL as literals, so quotes,
# backslashes, Grafana's ``$`` and macro braces are refused outright (and quoting escapes anyway).
_NAME = r"^[\w.:/@+=# -]+$"


class Price(BaseModel):
    """The price of one model (every version, ``model_version=""``) or of one of its versions,
    per :data:`PER_TOKENS` input and output tokens, in one currency of your choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(pattern=_NAME, max_length=512)
    model_version: str = Field(default="", pattern=r"^$|" + _NAME, max_length=512)
    input_per_1m: float = Field(ge=0, allow_inf_nan=False)
    output_per_1m: float = Field(ge=0, allow_inf_nan=False)

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / PER_TOKENS


class PriceTable(BaseModel):
    """Prices by model, optionally by version; a version's own price wins over its model's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prices: tuple[Price, ...] = ()

    @model_validator(mode="after")
    def _one_price_each(self) -> PriceTable:
        seen: set[tuple[str, str]] = set()
        for p in self.prices:
            key = (p.model, p.model_version)
            if key in seen:
                where = f"{p.model} {p.model_version}".strip()
                raise ValueError(f"two prices for {where}")
            seen.add(key)
        return self

    @classmethod
    def parse(cls, text: str) -> PriceTable:
        """A table from ``TELLTALE_USAGE_PRICES``: a JSON list of :class:`Price` objects, or the
        short form ``model=input:output,...`` (per 1M tokens, every version of the model).

        >>> PriceTable.parse('[{"model": "m", "model_version": "v2", "input_per_1m": 1,'
        ...                  ' "output_per_1m": 4}]').lookup("m", "v2").output_per_1m
        4.0
        """
        text = text.strip()
        if not text:
            return cls()
        if text.startswith("["):
            try:
                return cls(prices=tuple(json.loads(text)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"prices are not valid JSON: {exc}") from exc
        prices = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            model, eq, rates = item.rpartition("=")
            parts = rates.split(":")
            if not eq or len(parts) != 2:
                raise ValueError(f"{item!r} is not model=input_per_1m:output_per_1m")
            try:
                prices.append(Price(model=model.strip(), input_per_1m=float(parts[0]),
                                    output_per_1m=float(parts[1])))  # fmt: skip
            except (ValueError, ValidationError) as exc:
                raise ValueError(f"{item!r}: {exc}") from exc
        return cls(prices=tuple(prices))

    def lookup(self, model: str, model_version: str) -> Price | None:
        """The version's price, else the model's, else None (unpriced: cost unknown, not 0)."""
        exact = general = None
        for p in self.prices:
            if p.model == model and p.model_version == model_version:
                exact = p
            elif p.model == model and not p.model_version:
                general = p
        return exact or general

    def sql(self, model: str = "model", version: str = "model_version") -> tuple[str, str]:
        """ClickHouse expressions of the input and output price per 1M tokens of a row whose
        model and version are in the columns ``model`` and ``version`` (NULL when unpriced).

        Versions' own prices come first, as in :meth:`lookup`. The names are literals (see
        ``_NAME``); the columns come from code.
        """
        ordered = sorted(self.prices, key=lambda p: p.model_version == "")
        if not ordered:
            return ("CAST(NULL, 'Nullable(Float64)')",) * 2

        def case(p: Price) -> str:
            match = f"{model} = {_literal(p.model)}"
            if p.model_version:
                match += f" AND {version} = {_literal(p.model_version)}"
            return match

        def expression(pick: str) -> str:
            arms = ", ".join(f"{case(p)}, {getattr(p, pick)!r}" for p in ordered)
            return f"multiIf({arms}, NULL)"

        return expression("input_per_1m"), expression("output_per_1m")


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class UsageRow:
    """Tokens of one model version (per time bucket), and their cost where priced."""

    model: str
    model_version: str
    bucket: datetime | None
    events: int  # all events of the version (events_1m)
    events_with_usage: int
    input_tokens: int
    output_tokens: int
    input_events: int  # events that reported input tokens
    output_events: int
    price: Price | None

    @property
    def cost(self) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(self.input_tokens, self.output_tokens)

    @property
    def cost_per_event(self) -> float | None:
        cost = self.cost
        return None if cost is None or not self.events_with_usage else cost / self.events_with_usage

    def as_dict(self) -> dict[str, Any]:
        def per(tokens: int, events: int) -> float | None:
            return tokens / events if events else None

        return {
            "model": self.model,
            "model_version": self.model_version,
            "bucket": self.bucket.isoformat() if self.bucket else None,
            "events": self.events,
            "events_with_usage": self.events_with_usage,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_tokens_per_event": per(self.input_tokens, self.input_events),
            "output_tokens_per_event": per(self.output_tokens, self.output_events),
            "input_per_1m": None if self.price is None else self.price.input_per_1m,
            "output_per_1m": None if self.price is None else self.price.output_per_1m,
            "cost": self.cost,
            "cost_per_event": self.cost_per_event,
        }


def usage_by_version(
    client: Client,
    *,
    prices: PriceTable | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket = "total",
) -> list[UsageRow]:
    """Tokens and cost per (model, model_version), optionally per time bucket.

    Sums are scaled by distinct events over summed rows (see ``storage.schema_usage``): exact
    when no physical duplicate waits for a merge (the usual case); while one waits, the totals
    are an estimate that charges each event once on average instead of the duplicate twice.
    Versions without any event that reported usage are listed with zero tokens, so coverage
    (``events_with_usage`` / ``events``) shows where instrumentation records none.
    """
    prices = prices or PriceTable()
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, model=model)
    if since is not None:
        where.append("minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})")
        params["since"] = as_utc(since)
    if until is not None:
        where.append("minute < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)
    bucket_sql = bucket_start(bucket, "minute")
    sql = f"""
        SELECT v.model, v.model_version, v.bucket, v.n,
               u.n, u.event_rows, u.input_rows, u.output_rows, u.input_sum, u.output_sum
        FROM (
            SELECT model, model_version, {bucket_sql} AS bucket, uniqExactMerge(events) AS n
            FROM events_1m WHERE {" AND ".join(where)}
            GROUP BY model, model_version, bucket
        ) AS v
        LEFT JOIN (
            SELECT model, model_version, {bucket_sql} AS bucket, uniqExactMerge(events) AS n,
                   sum(event_rows) AS event_rows, sum(input_rows) AS input_rows,
                   sum(output_rows) AS output_rows, sum(input_sum) AS input_sum,
                   sum(output_sum) AS output_sum
            FROM usage_1m WHERE {" AND ".join(where)}
            GROUP BY model, model_version, bucket
        ) AS u ON u.model = v.model AND u.model_version = v.model_version AND u.bucket = v.bucket
        ORDER BY v.model, v.model_version, v.bucket
        SETTINGS join_use_nulls = 0
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    rows = client.query(sql, parameters=params).result_rows
    found = []
    for r in rows:
        with_usage, summed = int(r[4]), int(r[5])
        scale = with_usage / summed if summed else 0.0

        def scaled(value: Any, factor: float = scale) -> int:
            return math.floor(int(value) * factor + 0.5)

        found.append(UsageRow(
            model=str(r[0]), model_version=str(r[1]),
            bucket=None if bucket == "total" else as_utc(r[2]),
            events=int(r[3]), events_with_usage=with_usage,
            input_tokens=scaled(r[8]), output_tokens=scaled(r[9]),
            input_events=scaled(r[6]), output_events=scaled(r[7]),
            price=prices.lookup(str(r[0]), str(r[1])),
        ))  # fmt: skip
    return found
