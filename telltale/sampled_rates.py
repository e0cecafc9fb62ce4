"""Rate rows of a sampling worker's data: Horvitz–Thompson estimates with honest intervals.

``telltale rates`` reads counts from the per-minute view; every row gains ``scored`` (events
scored) beside ``events``. Where a row holds sampled events (an inclusion probability below 1,
see :mod:`storage.sampled`), its figures are replaced:

* ``events``: the events seen, those scored plus those of the signal's field the sampler left
  out (both stored; only the drawn ones have scores);
* ``rate``: the Hájek estimate ``Σ flagged/p ÷ Σ 1/p`` over the scored events, and
  ``failures`` = ``rate × events``, the failures it estimates among the events seen;
* ``rate_low`` / ``rate_high``: the Wilson interval on Kish's effective size of the weights,
  ``(Σ w)² / Σ w²`` (equal weights, the usual case within a row: the scored count), so the
  interval reflects the events actually scored, not the events seen;
* with ``--corrected``, the correction takes the scored events, worth both Kish's size and the
  retry-aware content count (:func:`storage.effective_events`): the two design effects
  multiply.

Rows without sampled events are left exactly as they were.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["effective_for_correction", "weigh_rates"]

Bucket = Literal["total", "minute", "hour", "day"]


def _key(d: dict[str, Any]) -> tuple[str, str, str, datetime | None]:
    bucket = datetime.fromisoformat(d["bucket"]) if d.get("bucket") else None
    return d["signal"], d["model"], d["model_version"], bucket


def weigh_rates(
    client: Client,
    docs: list[dict[str, Any]],
    *,
    signal: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    bucket: Bucket,
) -> None:
    """Add ``scored`` to every rate row; replace a sampled row's figures by its estimates."""
    from alerts import wilson_interval_of_rate
    from storage import unsampled_events, weighted_rate_sums
    from telltale.signal_store import ClickHouseSignalStore

    for d in docs:
        d["scored"] = d["events"]
    sums = weighted_rate_sums(client, signal=signal, model=model, since=since, until=until,
                              bucket=bucket)  # fmt: skip
    if not sums:
        return
    fields = {s.name: s.field for s in ClickHouseSignalStore(client).latest()}
    left_out: dict[tuple[str, str, str, datetime | None], int] = {}
    for name in {k[0] for k in sums}:
        if name in fields:  # signals with a field; groups and built-in series: scored only
            found = unsampled_events(client, name, fields[name], model=model, since=since,
                                     until=until, bucket=bucket)  # fmt: skip
            left_out |= {(name, *k): n for k, n in found.items()}
    for d in docs:
        key = _key(d)
        weighted = sums.get(key)
        if weighted is None:
            continue
        events = d["scored"] + left_out.get(key, 0)
        low, high = wilson_interval_of_rate(weighted.rate, weighted.effective_events)
        d.update(events=events, failures=weighted.rate * events, rate=weighted.rate,
                 rate_low=low, rate_high=high,
                 sampling={"weighted_events": weighted.weight,
                           "effective_events": weighted.effective_events})  # fmt: skip


def effective_for_correction(
    d: dict[str, Any], content_worth: float | None
) -> tuple[int, float, float | None]:
    """(events, flagged, effective events) for :meth:`telltale.trust.SignalErrors.correct`:
    the row's own counts when it was not sampled, else its scored events at the estimated
    rate, worth Kish's size times the content count's share of the scored events."""
    sampling: dict[str, float] | None = d.get("sampling")
    if sampling is None:
        return d["events"], d["failures"], content_worth
    scored = int(d["scored"])
    kish = sampling["effective_events"]
    effective = kish if content_worth is None else kish * min(content_worth / scored, 1.0)
    return scored, d["rate"] * scored, effective
