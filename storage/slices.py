"""Reads of failure rates by slice (``failure_rates_by_slice_1m``) and of slice values.

A *slice* is the set of events sharing one value of one slice key (an ``attributes`` entry such
as ``locale``, or ``app``). The pipeline writes each score row's slice values; the view in
``storage.schema`` (migration 13) fans them out into per-minute rates per (key, value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters
from storage._time import as_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "COMBINATION",
    "OTHER_SLICE",
    "SLICE_VALUE_CHARS",
    "SliceCount",
    "cell_values",
    "event_slice_sources",
    "slice_cell_people",
    "slice_counts",
    "slice_people",
    "small_cells_merged",
    "top_slice_values",
]


@dataclass(frozen=True)
class SliceCount:
    """Events and failures of one signal in one slice (a value per key in ``values``)."""

    signal: str
    model: str
    model_version: str
    values: tuple[str, ...]
    events: int
    failures: int


def top_slice_values(client: Client, keys: list[str], limit: int) -> dict[str, list[str]]:
    """Per slice key, its ``limit`` most frequent stored values (by distinct events), most
    frequent first: the pipeline's cardinality cap keeps these across restarts."""
    if not keys:
        return {}
    rows = client.query(
        """
        SELECT slice_key, slice_value FROM (
            SELECT slice_key, slice_value, uniqExactMerge(events) AS n
            FROM failure_rates_by_slice_1m
            WHERE slice_key IN {keys:Array(String)}
            GROUP BY slice_key, slice_value
        )
        ORDER BY slice_key, n DESC, slice_value
        LIMIT {limit:UInt32} BY slice_key
        """,
        parameters={"keys": list(keys), "limit": limit},
    ).result_rows
    found: dict[str, list[str]] = {key: [] for key in keys}
    for key, value in rows:
        found[str(key)].append(str(value))
    return found


def slice_counts(
    client: Client,
    keys: list[str],
    *,
    signal: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_users: int = 0,
) -> list[SliceCount]:
    """Events and failures per (signal, model, version) and per combination of ``keys``' values.

    One key reads the per-minute slice table. Several keys need the values of each event
    together, so they are read from the score rows (``FINAL``, deduplicated per event). With
    ``min_users``, small cells are merged as :func:`small_cells_merged` says.
    """
    if not keys:
        raise ValueError("at least one slice key is needed")
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, signal=signal, model=model)
    if len(keys) == 1:
        if since is not None:
            where.append("minute >= toStartOfMinute({since:DateTime64(3, 'UTC')})")
        if until is not None:
            where.append("minute < {until:DateTime64(3, 'UTC')}")
        where.append("slice_key = {key0:String}")
        counts = f"""
            SELECT signal, model, model_version, slice_key, slice_value,
                   uniqExactMerge(events) AS n, uniqExactIfMerge(failures) AS k
            FROM failure_rates_by_slice_1m
            WHERE {" AND ".join(where)}
            GROUP BY signal, model, model_version, slice_key, slice_value
        """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    else:
        for bound, op in (("since", ">="), ("until", "<")):
            if (since if bound == "since" else until) is not None:
                where.append(f"timestamp {op} {{{bound}:DateTime64(3, 'UTC')}}")
        counts = f"""
            SELECT signal, model, model_version, {{joined:String}} AS slice_key,
                   {COMBINATION} AS slice_value,
                   uniqExact(event_id) AS n, uniqExactIf(event_id, flagged) AS k
            FROM signal_scores FINAL
            WHERE {" AND ".join(where)}
            GROUP BY signal, model, model_version, slice_key, slice_value
        """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    people = slice_cell_people(keys, since, until, params)
    sql = small_cells_merged(counts, people, min_users) if min_users > 0 else counts
    sql = f"SELECT * FROM ({sql}) ORDER BY signal, model, model_version, n DESC, slice_value"  # noqa: S608
    rows = client.query(sql, parameters=params).result_rows
    return [
        SliceCount(str(r[0]), str(r[1]), str(r[2]), cell_values(str(r[4]), len(keys)), int(r[5]),
                   int(r[6]))
        for r in rows
    ]  # fmt: skip


# The value that stands for many: the pipeline's cardinality cap writes it, and small cells are
# merged into it.
OTHER_SLICE = "other"

# A combination of several keys' values travels as one string, joined by the unit separator.
_KEY_SEP = "\x1f"
COMBINATION = "arrayStringConcat(arrayMap(x -> slices[x], {keys:Array(String)}), '\\x1f')"
"""SQL of a score row's values of the bound ``keys``, joined as one slice value."""

# A slice value is a label, not a payload: the slicer keeps this many characters of it.
SLICE_VALUE_CHARS = 200

# Who an event is for the small-cell rule: its user, else its session, else itself (an event
# without either cannot be tied to anyone else's, so it counts as one person).
_PERSON = (
    "any(if(user_id != '', concat('u:', user_id), "
    "if(session_id != '', concat('s:', session_id), concat('e:', event_id))))"
)


def slice_cell_people(
    keys: list[str], since: datetime | None, until: datetime | None, params: dict[str, Any]
) -> str:
    """SQL of the people of the cells :func:`slice_counts` reads for ``keys`` (see
    :func:`slice_people`), binding what it needs (the keys, the time bounds) in ``params``."""
    scope = ["1"]  # the score rows whose people count (time only: a cell is a model's slice)
    start = "{since:DateTime64(3, 'UTC')}"
    if len(keys) == 1:  # one key reads the per-minute table: from the start of the minute
        start = f"toStartOfMinute({start})"
    if since is not None:
        scope.append(f"timestamp >= {start}")
        params["since"] = as_utc(since)
    if until is not None:
        scope.append("timestamp < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)
    if len(keys) == 1:
        params["key0"] = keys[0]
        return slice_people(" AND ".join(scope), "slice_key = {key0:String}")
    params["keys"], params["joined"] = list(keys), _KEY_SEP.join(keys)
    return slice_people(" AND ".join(scope), "1", combination=COMBINATION,
                        combination_key="{joined:String}")  # fmt: skip


def cell_values(joined: str, n_keys: int) -> tuple[str, ...]:
    """A cell's values, one per key, from its ``slice_value`` (several keys' values joined)."""
    if n_keys == 1:
        return (joined,)
    if joined == OTHER_SLICE:
        return (OTHER_SLICE,) * n_keys
    return tuple(joined.split(_KEY_SEP))


def slice_people(
    scope: str, key_filter: str, *, combination: str = "", combination_key: str = ""
) -> str:
    """SQL of the distinct people per (model, version, slice key, slice value) among the score
    rows in ``scope`` (fixed SQL over ``timestamp``; Grafana macros or bound parameters): one
    row per key of each event's ``slices``, or per ``combination`` of several keys' values."""
    if combination:
        fan_out = f"{combination_key} AS slice_key, {combination} AS slice_value"
        array_join = ""
    else:
        fan_out = "slice_key, slice_value"
        array_join = "ARRAY JOIN mapKeys(s.slices) AS slice_key, mapValues(s.slices) AS slice_value"
    return f"""
        SELECT DISTINCT s.model AS model, s.model_version AS model_version, {fan_out},
               e.person AS person
        FROM (
            SELECT event_id, any(model) AS model, any(model_version) AS model_version,
                   any(slices) AS slices
            FROM signal_scores WHERE {scope} GROUP BY event_id
        ) AS s
        {array_join}
        INNER JOIN (
            SELECT event_id, {_PERSON} AS person FROM events WHERE {scope} GROUP BY event_id
        ) AS e ON e.event_id = s.event_id
        WHERE {key_filter}
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters


def small_cells_merged(
    counts: str, people: str, min_users: int, *, carry: str = "", sums: tuple[str, ...] = ()
) -> str:
    """``counts`` (SQL of signal, model, model_version, slice_key, slice_value, n, k) with every
    cell of fewer than ``min_users`` distinct people (``people``: :func:`slice_people`) merged
    into ``other`` per (model, version, key), so a rate cannot single out a person; a merged
    ``other`` still under ``min_users`` is left out, and so are cells whose events are gone
    (their people cannot be counted). Counts add up exactly: an event has one value per key.
    ``carry`` names one more column of ``counts`` kept as it is (a series' ``time``); cells
    are judged over all of ``people``, not per value of it. ``sums`` names more columns of
    ``counts`` that are added up over merged cells, as ``n`` and ``k`` are."""
    if min_users < 1:
        raise ValueError("min_users must be at least 1")
    if carry and not carry.isidentifier():
        raise ValueError(f"carry must be a column name, not {carry!r}")
    if not all(column.isidentifier() for column in sums):
        raise ValueError(f"sums must be column names, not {sums!r}")
    summed = "".join(f", sum(c.{column}) AS {column}" for column in sums)
    cell_of = f"""
        SELECT model, model_version, slice_key, slice_value,
               if(uniqExact(person) < {int(min_users)}, '{OTHER_SLICE}', slice_value) AS cell
        FROM people GROUP BY model, model_version, slice_key, slice_value
    """  # noqa: S608 - min_users is an int; no value is formatted
    return f"""
        WITH people AS ({people}), cells AS ({cell_of})
        SELECT {f"c.{carry} AS {carry}, " if carry else ""}c.signal AS signal, c.model AS model,
               c.model_version AS model_version,
               c.slice_key AS slice_key, m.cell AS slice_value,
               toUInt64(sum(c.n)) AS n, toUInt64(sum(c.k)) AS k{summed}
        FROM ({counts}) AS c
        INNER JOIN cells AS m
            ON m.model = c.model AND m.model_version = c.model_version
           AND m.slice_key = c.slice_key AND m.slice_value = c.slice_value
        INNER JOIN (
            SELECT p.model AS model, p.model_version AS model_version, p.slice_key AS slice_key,
                   q.cell AS cell, uniqExact(p.person) AS users
            FROM people AS p
            INNER JOIN cells AS q
                ON q.model = p.model AND q.model_version = p.model_version
               AND q.slice_key = p.slice_key AND q.slice_value = p.slice_value
            GROUP BY model, model_version, slice_key, cell
        ) AS u
            ON u.model = c.model AND u.model_version = c.model_version
           AND u.slice_key = c.slice_key AND u.cell = m.cell
        WHERE u.users >= {int(min_users)}
        GROUP BY {f"{carry}, " if carry else ""}signal, model, model_version, slice_key, slice_value
    """  # noqa: S608 - only fixed fragments and an int are formatted


def event_slice_sources(
    client: Client, event_ids: list[str]
) -> dict[str, tuple[str, dict[str, str]]]:
    """``app`` and ``attributes`` of stored events, by id: what slice values are made of."""
    rows = client.query(
        "SELECT event_id, any(app), any(attributes) FROM events "
        "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
        parameters={"ids": list(event_ids)},
    ).result_rows
    return {str(r[0]): (str(r[1]), {str(k): str(v) for k, v in r[2].items()}) for r in rows}
