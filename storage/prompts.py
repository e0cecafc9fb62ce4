"""Prompt samples for the drift test: embeddings over several time spans, with each prompt's unit.

The drift test compares a recent window of prompts with a *seasonal* reference (the same clock
hours on previous days), so one read covers several disjoint spans. Every sampled prompt comes
with its *unit*, the independent source it belongs to: ``u:<user_id>`` when the event names a
user, else ``s:<session_id>``, else ``e:<event_id>`` (the event is its own unit). The test permutes
units, not prompts, so one user's retry storm cannot pass for drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage._time import require_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["UnitSample", "prompt_unit_sample"]

_MAX_SPANS = 32


@dataclass(frozen=True)
class UnitSample:
    """Sampled prompt embeddings (``vectors``) with their events, units and embedder."""

    embedder_id: str
    event_ids: list[str]
    units: list[str]
    vectors: list[list[float]]


def prompt_unit_sample(
    client: Client,
    model: str,
    spans: Sequence[tuple[datetime, datetime]],
    *,
    field: str,
    limit: int,
    embedder_id: str | None = None,
) -> UnitSample:
    """Up to ``limit`` embeddings of ``field`` for ``model`` in the union of ``spans``.

    The sample is deterministic (the same on every read) and takes whole units in the order of
    ``cityHash64(unit)``; one embedder (the one with most vectors unless given).
    """
    if not spans:
        return UnitSample(embedder_id or "", [], [], [])
    if len(spans) > _MAX_SPANS:
        raise ValueError(f"at most {_MAX_SPANS} spans")
    params: dict[str, Any] = {"model": model, "field": field, "limit": limit}
    ranges = []
    for i, (since, until) in enumerate(spans):
        params[f"s{i}"], params[f"u{i}"] = require_utc(since), require_utc(until)
        ranges.append(
            f"(timestamp >= {{s{i}:DateTime64(3, 'UTC')}}"
            f" AND timestamp < {{u{i}:DateTime64(3, 'UTC')}})"
        )
    window = f"model = {{model:String}} AND field = {{field:String}} AND ({' OR '.join(ranges)})"
    if embedder_id is None:
        top = client.query(
            f"SELECT embedder_id FROM embeddings WHERE {window} "  # noqa: S608 - fixed text
            "GROUP BY embedder_id ORDER BY count() DESC, embedder_id LIMIT 1",
            parameters=params,
        ).result_rows
        if not top:
            return UnitSample("", [], [], [])
        embedder_id = str(top[0][0])
    params["embedder"] = embedder_id
    # Whole units first: the sample takes units in hash order (all of a unit's prompts, but for
    # the last one), so a unit's share of prompts is the same in every window it is sampled in.
    rows = client.query(
        f"""
        SELECT emb.event_id, any(emb.vector),
               any(multiIf(ev.user_id != '', concat('u:', ev.user_id),
                           ev.session_id != '', concat('s:', ev.session_id),
                           concat('e:', emb.event_id))) AS unit
        FROM embeddings AS emb
        LEFT JOIN (
            SELECT event_id, any(user_id) AS user_id, any(session_id) AS session_id
            FROM events WHERE model = {{model:String}} AND ({" OR ".join(ranges)})
            GROUP BY event_id
        ) AS ev ON emb.event_id = ev.event_id
        WHERE {window} AND emb.embedder_id = {{embedder:String}}
        GROUP BY emb.event_id ORDER BY cityHash64(unit), emb.event_id LIMIT {{limit:UInt32}}
        """,  # noqa: S608 - fixed text; values are bound parameters
        parameters=params,
    ).result_rows
    return UnitSample(
        embedder_id, [str(r[0]) for r in rows], [str(r[2]) for r in rows],
        [list(r[1]) for r in rows],
    )  # fmt: skip
