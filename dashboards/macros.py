"""Grafana's ClickHouse macros turned into parameter-bound SQL, so dashboard SQL runs anywhere.

Dashboard SQL is written for Grafana (``$__timeFilter(ts)``, ``${model:singlequote}``, ...).
The static report, the alert-rule tests and the panel tests execute that *same* text; this
module is the one place that turns it into ClickHouse SQL. Values never enter the SQL text:
the time range, the interval and every template-variable value become bound parameters
(``{tt_from:DateTime64(3, 'UTC')}``, ``{var_model:Array(String)}``), and anything this module
does not understand raises :class:`MacroError` instead of reaching ClickHouse half-rendered.

Supported, with the plugin's meaning:

* ``$__timeFilter(expr)`` (second precision), ``$__timeFilter_ms(expr)``
* ``$__fromTime`` / ``$__toTime`` (DateTime), ``$__fromTime_ms`` / ``$__toTime_ms`` (DateTime64)
* ``$__timeInterval(expr)`` and ``$__interval_s``
* ``$__conditionalAll(condition, $var)``: ``1=1`` when ``var`` is "All", else the condition
* ``(${var:singlequote})``, i.e. a variable as the right-hand side of ``IN (...)``

Example::

    >>> ctx = QueryContext(start, end, variables={"model": ("chat",), "app": None})
    >>> render("SELECT 1 WHERE $__conditionalAll(model IN (${model:singlequote}), $model)", ctx)
    BoundQuery(sql='SELECT 1 WHERE (model IN {var_model:Array(String)})', parameters={...})
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dashboards.errors import MacroError

__all__ = [
    "BoundQuery",
    "MacroError",
    "QueryContext",
    "interval_for",
    "parse_interval_s",
    "render",
    "round_interval_ms",
]

_TIME_TYPE = "DateTime64(3, 'UTC')"
_FROM = f"{{tt_from:{_TIME_TYPE}}}"
_TO = f"{{tt_to:{_TIME_TYPE}}}"
_INTERVAL = "{tt_interval_s:UInt32}"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VARIABLE_IN = re.compile(r"\(\s*\$\{(" + _NAME + r"):singlequote\}\s*\)")
_VARIABLE_REF = re.compile(r"^\s*\$(?:(" + _NAME + r")|\{(" + _NAME + r")\})\s*$")


@dataclass(frozen=True)
class QueryContext:
    """What Grafana would supply: the time range, the interval and the variable values.

    A variable mapped to ``None`` is "All"; a tuple is the selected values.
    """

    start: datetime
    end: datetime
    interval_s: int = 60
    variables: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.interval_s < 1:
            raise ValueError("interval_s must be at least 1 second")


# Grafana's interval ladder in milliseconds (``roundInterval`` in @grafana/data's rangeutil):
# an interval below the first bound of a row rounds to that row's step.
_GRAFANA_LADDER_MS: tuple[tuple[float, int], ...] = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
    (1_500, 1_000), (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000),
    (25_000, 20_000), (45_000, 30_000), (90_000, 60_000), (210_000, 120_000),
    (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
    (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)  # fmt: skip
_GRAFANA_LADDER_TOP_MS = 31_536_000_000


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's ``roundInterval``: the "nice" step an interval of ``interval_ms`` rounds to."""
    return next((step for bound, step in _GRAFANA_LADDER_MS if interval_ms < bound),
                _GRAFANA_LADDER_TOP_MS)  # fmt: skip


def interval_for(
    start: datetime, end: datetime, max_data_points: int = 1000, min_interval_s: int = 60
) -> int:
    """The interval (whole seconds) Grafana gives a panel: ``max(roundInterval(range /
    max_data_points), min_interval)``.

    ``max_data_points`` is the panel's width in pixels unless the panel sets one (Grafana's
    query runner); ``min_interval_s`` is the panel's *Min interval* (telltale's panels say
    ``1m``: the rate tables are per minute). A day over a 1,100-pixel panel is one minute; over
    a half-width panel, two.

    >>> day = (datetime(2026, 9, 14, tzinfo=UTC), datetime(2026, 9, 15, tzinfo=UTC))
    >>> interval_for(*day, max_data_points=1104), interval_for(*day, max_data_points=552)
    (60, 120)
    """
    range_ms = max((end - start).total_seconds() * 1000, 0.0)
    rounded = round_interval_ms(range_ms / max(max_data_points, 1))
    return max(math.ceil(rounded / 1000), min_interval_s, 1)


_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval_s(text: str | None, default: int = 1) -> int:
    """A panel's *Min interval* (``"1m"``, ``"30s"``) in whole seconds; ``default`` if unset."""
    match = _DURATION.match(text or "")
    if match is None:
        return default
    return max(1, math.ceil(int(match.group(1)) * _UNIT_S[match.group(2)]))


@dataclass(frozen=True)
class BoundQuery:
    """ClickHouse SQL with server-side ``{name:Type}`` placeholders and their values."""

    sql: str
    parameters: dict[str, object]


def render(sql: str, ctx: QueryContext) -> BoundQuery:
    """Expand every Grafana macro in ``sql`` into bound parameters; see the module docstring."""
    params: dict[str, object] = {}

    def conditional_all(args: str) -> str:
        condition, variable = _split_last_argument(args)
        match = _VARIABLE_REF.match(variable)
        if match is None:
            raise MacroError(f"$__conditionalAll needs a variable as its second argument: {args!r}")
        name = match.group(1) or match.group(2)
        if name not in ctx.variables:
            raise MacroError(f"variable ${name} is not defined in the query context")
        return "1=1" if ctx.variables[name] is None else f"({condition.strip()})"

    def time_filter(column: str, precise: bool) -> str:
        params["tt_from"], params["tt_to"] = ctx.start, ctx.end
        low, high = (_FROM, _TO) if precise else (f"toDateTime({_FROM})", f"toDateTime({_TO})")
        expr = _required(column, "$__timeFilter")
        return f"({expr} >= {low} AND {expr} <= {high})"

    def time_interval(column: str) -> str:
        params["tt_interval_s"] = ctx.interval_s
        expr = _required(column, "$__timeInterval")
        return f"toStartOfInterval(toDateTime({expr}), toIntervalSecond({_INTERVAL}))"

    out = _replace_calls(sql, "$__conditionalAll", conditional_all)
    out = _replace_calls(out, "$__timeFilter_ms", lambda a: time_filter(a, precise=True))
    out = _replace_calls(out, "$__timeFilter", lambda a: time_filter(a, precise=False))
    out = _replace_calls(out, "$__timeInterval", time_interval)
    values = {"tt_from": ctx.start, "tt_to": ctx.end, "tt_interval_s": ctx.interval_s}
    for macro, text, key in (
        ("$__fromTime_ms", _FROM, "tt_from"),
        ("$__toTime_ms", _TO, "tt_to"),
        ("$__fromTime", f"toDateTime({_FROM})", "tt_from"),
        ("$__toTime", f"toDateTime({_TO})", "tt_to"),
        ("$__interval_s", _INTERVAL, "tt_interval_s"),
    ):
        pattern = re.compile(re.escape(macro) + r"(?![A-Za-z0-9_])")
        out, count = pattern.subn(_constant(text), out)
        if count:
            params[key] = values[key]

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ctx.variables:
            raise MacroError(f"variable ${name} is not defined in the query context")
        chosen = ctx.variables[name]
        if chosen is None:
            raise MacroError(f"variable ${name} is 'All' outside $__conditionalAll")
        params[f"var_{name}"] = list(chosen)
        return f"{{var_{name}:Array(String)}}"

    out = _VARIABLE_IN.sub(variable, out)
    if "$" in out:
        at = out.index("$")
        raise MacroError(f"unsupported macro or variable form near {out[at : at + 40]!r}")
    return BoundQuery(sql=out, parameters=params)


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement function for ``re.sub`` that inserts ``text`` literally."""
    return lambda _match: text


def _required(argument: str, macro: str) -> str:
    expr = argument.strip()
    if not expr:
        raise MacroError(f"{macro}() needs a column expression")
    return expr


def _replace_calls(sql: str, macro: str, replace: Callable[[str], str]) -> str:
    """Replace every ``macro(args)`` in ``sql`` by ``replace(args)``; parentheses may nest."""
    opener = macro + "("
    out: list[str] = []
    position = 0
    while (start := sql.find(opener, position)) >= 0:
        end = _closing_paren(sql, start + len(opener) - 1)
        out.append(sql[position:start])
        out.append(replace(sql[start + len(opener) : end]))
        position = end + 1
    out.append(sql[position:])
    return "".join(out)


def _top_level(sql: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """``(index, char, depth)`` of every character outside quotes, from ``start``; ``depth``
    counts the parentheses open before the character (a ``)`` is reported at its own depth)."""
    depth = 0
    quote: str | None = None
    index = start
    while index < len(sql):
        char = sql[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'`\"":
            quote = char
        else:
            if char == ")":
                depth -= 1
            yield index, char, depth
            if char == "(":
                depth += 1
        index += 1


def _closing_paren(sql: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at ``open_at``; quotes are skipped."""
    for index, char, depth in _top_level(sql, open_at):
        if char == ")" and depth == 0:
            return index
    raise MacroError(f"unbalanced parentheses after {sql[max(0, open_at - 20) : open_at + 1]!r}")


def _split_last_argument(args: str) -> tuple[str, str]:
    """Split ``args`` at its last top-level comma (the condition itself may contain commas)."""
    commas = [index for index, char, depth in _top_level(args) if char == "," and depth == 0]
    if not commas:
        raise MacroError(f"$__conditionalAll needs two arguments: {args!r}")
    return args[: commas[-1]], args[commas[-1] + 1 :]
