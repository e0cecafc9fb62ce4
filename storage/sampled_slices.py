"""What a sampling worker stored, per slice: weighted sums and the events left out.

The slice twin of :mod:`storage.sampled`. ``telltale rates --by KEY`` counts each slice's scored
events (:func:`storage.slices.slice_counts`); where a slice holds sampled events, its rate is a
Hájek estimate over the same cells, read here per event from ``signal_scores FINAL`` with the
same time bounds and the same small-cell merging.

Slice values are written on score rows only, but each is made of what every stored event keeps:
its ``app`` or one of its ``attributes`` (after the content policy), cut to
:data:`storage.slices.SLICE_VALUE_CHARS` characters (``streams.slices``). So the events of a
slice that the sampler left out can be counted exactly from ``events``: what the slicer's cap
turns into ``other`` is the one thing they cannot tell, so only a cell of named values is
counted that way.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters
from storage._time import as_utc
from storage.sampled import (
    EVENT_WEIGHT,
    WEIGHT_SUMS,
    WeightedSums,
    has_sampled_scores,
    left_out_counts,
    minute_filters,
)
from storage.slices import (
    COMBINATION,
    SLICE_VALUE_CHARS,
    cell_values,
    slice_cell_people,
    small_cells_merged,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["SliceKey", "unsampled_slice_events", "weighted_slice_sums"]

SliceKey = tuple[str, str, str, tuple[str, ...]]
"""(signal, model, model version, the cell's values: one per slice key)."""


def _time_filters(
    where: list[str],
    params: dict[str, Any],
    keys: list[str],
    since: datetime | None,
    until: datetime | None,
) -> None:
    """The time bounds :func:`storage.slices.slice_counts` applies, on raw rows: whole minutes
    for one key (it reads the per-minute table), the instants themselves for several."""
    if len(keys) == 1:
        minute_filters(where, params, since, until)
        return
    if since is not None:
        where.append("timestamp >= {since:DateTime64(3, 'UTC')}")
        params["since"] = as_utc(since)
    if until is not None:
        where.append("timestamp < {until:DateTime64(3, 'UTC')}")
        params["until"] = as_utc(until)


def weighted_slice_sums(
    client: Client,
    keys: list[str],
    *,
    signal: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    min_users: int = 0,
) -> dict[SliceKey, WeightedSums]:
    """Weighted sums of the cells :func:`storage.slices.slice_counts` gives for ``keys`` (small
    cells merged alike with ``min_users``) in which a scored event has a probability below 1."""
    if not keys:
        raise ValueError("at least one slice key is needed")
    where = ["1"]
    params: dict[str, Any] = {}
    add_equal_filters(where, params, signal=signal, model=model)
    _time_filters(where, params, keys, since, until)
    if not has_sampled_scores(client, " AND ".join(where), params):
        return {}
    people = slice_cell_people(keys, since, until, params)  # binds the keys, as slice_counts
    if len(keys) == 1:
        where.append("mapContains(slices, {key0:String})")  # the table fans out stored keys
        key_sql, value_sql = "{key0:String}", "slices[{key0:String}]"
    else:
        key_sql, value_sql = "{joined:String}", COMBINATION
    counts = f"""
        SELECT signal, model, model_version, slice_key, slice_value, {WEIGHT_SUMS},
               countIf(f) AS k, countIf(p < 1) AS sampled
        FROM (
            SELECT signal, model, model_version, event_id, {key_sql} AS slice_key,
                   {value_sql} AS slice_value, {EVENT_WEIGHT}
            FROM signal_scores FINAL
            WHERE {" AND ".join(where)}
            GROUP BY signal, model, model_version, event_id, slice_key, slice_value
        )
        GROUP BY signal, model, model_version, slice_key, slice_value
    """  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
    if min_users > 0:
        counts = small_cells_merged(counts, people, min_users, sums=("w", "fw", "w2", "sampled"))
    rows = client.query(
        f"SELECT signal, model, model_version, slice_value, n, w, fw, w2 FROM ({counts}) "  # noqa: S608
        "WHERE sampled > 0",
        parameters=params,
    ).result_rows
    return {
        (str(r[0]), str(r[1]), str(r[2]), cell_values(str(r[3]), len(keys))):
            WeightedSums(int(r[4]), float(r[5]), float(r[6]), float(r[7]))
        for r in rows
    }  # fmt: skip


def unsampled_slice_events(
    client: Client,
    signal: str,
    field: str,
    keys: list[str],
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[tuple[str, str, tuple[str, ...]], int]:
    """Per (model, version, values of ``keys`` as the slicer makes them before its cap):
    stored events with ``field`` that the sampler left out of ``signal``'s scores
    (:func:`storage.sampled.unsampled_events`, per slice instead of per time bucket)."""
    if not keys:
        raise ValueError("at least one slice key is needed")
    where = ["1"]
    params: dict[str, Any] = {"slice_keys": list(keys), "slice_chars": SLICE_VALUE_CHARS}
    add_equal_filters(where, params, model=model)
    _time_filters(where, params, keys, since, until)
    values = (
        "arrayMap(x -> substringUTF8(if(x = 'app', app, attributes[x]), 1, "
        "{slice_chars:UInt32}), {slice_keys:Array(String)})"
    )
    rows = left_out_counts(client, signal, field, values, where, params)
    return {(str(r[0]), str(r[1]), tuple(str(v) for v in r[2])): int(r[3]) for r in rows}
