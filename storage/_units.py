"""The unit rule and the "as of" rule of the monitor's reads, as SQL fragments shared by
:func:`storage.series.unit_counts` (failures per unit) and :mod:`storage.exceedance` (a
per-event quantity above a threshold, per unit), so both count the same units."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage._time import require_utc

__all__ = ["unit_group_by", "visible_as_of"]


def unit_group_by(*, event_id: str, prompt: str, session: str, user: str, ts: str) -> str:
    """``GROUP BY`` keys of one unit: events with a session (else a user) and the same prompt
    text in the same aligned ``{window:UInt32}``-minute window; an event without either, or
    without a prompt text, is its own unit. The arguments are column expressions from code."""
    return f"""if({prompt} = '', concat('e:', {event_id}),
                   if({session} != '', concat('s:', {session}),
                      if({user} != '', concat('u:', {user}), concat('e:', {event_id})))),
                cityHash64({prompt}),
                toStartOfInterval({ts}, toIntervalMinute({{window:UInt32}}))"""


def visible_as_of(
    params: dict[str, Any],
    as_of: datetime | None,
    backfill_after_s: float,
    *,
    ingested: str = "e.ingested",
    ts: str = "e.ts",
) -> str:
    """A condition true for rows visible ``as_of`` (``"1"`` when ``None``): ingested by then, or
    more than ``backfill_after_s`` after their own timestamp (back-fills and replays, which no
    live reader would have waited for). Binds ``as_of`` and ``backfill_ms`` in ``params``."""
    if as_of is None:
        return "1"
    params["as_of"] = require_utc(as_of)
    params["backfill_ms"] = int(backfill_after_s * 1000)
    return (
        f"({ingested} <= {{as_of:DateTime64(3, 'UTC')}} OR "
        f"toUnixTimestamp64Milli({ingested}) - toUnixTimestamp64Milli({ts})"
        " > {backfill_ms:Int64})"
    )
