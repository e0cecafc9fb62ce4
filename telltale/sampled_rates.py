"""Rate rows of a sampling worker's data: Horvitz–Thompson estimates with honest intervals.

``telltale rates`` reads counts from the per-minute view; every row gains ``scored`` (events
scored) beside ``events``. Where a row holds sampled events (an inclusion probability below 1,
see :mod:`storage.sampled`), its figures are replaced:

* ``events``: the events seen, those scored plus those of the signal's field the sampler left
  out (both stored; only the drawn ones have scores);
* ``rate``: the Hájek estimate ``Σ flagged/p ÷ Σ 1/p`` over the scored events, and
  ``failures`` = ``rate × events``, the failures it estimates among the events seen;
* ``rate_low`` / ``rate_high``: the Wilson interval on what the scored events are worth as
  independent draws, so it reflects the events actually scored, not the events seen. Two
  design effects multiply: Kish's effective size of the weights, ``(Σ w)² / Σ w²`` (equal
  weights, the usual case within a row: the scored count), and the retry-aware content count
  the corrected rate already uses (:func:`storage.effective_events`: copies of one answer
  share one flag). The sample is drawn by user, and a user's retries repeat an answer, so the
  second matters more under sampling than without it;
* with ``--corrected``, the correction takes the scored events at the estimated rate, worth
  the same effective count.

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
    from storage import effective_events, unsampled_events, weighted_rate_sums
    from telltale.signal_store import ClickHouseSignalStore

    for d in docs:
        d["scored"] = d["events"]
    sums = weighted_rate_sums(client, signal=signal, model=model, since=since, until=until,
                              bucket=bucket)  # fmt: skip
    if not sums:
        return
    fields = {s.name: s.field for s in ClickHouseSignalStore(client).latest()}
    left_out: dict[tuple[str, str, str, datetime | None], int] = {}
    worth: dict[tuple[str, str, str, tuple[str, ...]], float] = {}
    for name in {k[0] for k in sums}:
        if name in fields:  # signals with a field; groups and built-in series: scored only
            found = unsampled_events(client, name, fields[name], model=model, since=since,
                                     until=until, bucket=bucket)  # fmt: skip
            left_out |= {(name, *k): n for k, n in found.items()}
            worth |= effective_events(client, name, fields[name], by=bucket, model=model,
                                      since=since, until=until)  # fmt: skip
    for d in docs:
        key = _key(d)
        weighted = sums.get(key)
        if weighted is None:
            continue
        events = d["scored"] + left_out.get(key, 0)
        content = worth.get((*key[:3], _values(key[3])))
        effective = weighted.effective_events
        if content is not None and d["scored"]:
            effective *= min(content / d["scored"], 1.0)
        low, high = wilson_interval_of_rate(weighted.rate, effective)
        d.update(events=events, failures=weighted.rate * events, rate=weighted.rate,
                 rate_low=low, rate_high=high,
                 sampling={"weighted_events": weighted.weight,
                           "kish_events": weighted.effective_events,
                           "effective_events": effective})  # fmt: skip


def _values(bucket: datetime | None) -> tuple[str, ...]:
    """A bucket as :data:`storage.effective.RowKey` names it."""
    return () if bucket is None else (bucket.strftime("%Y-%m-%d %H:%M:%S"),)


def effective_for_correction(
    d: dict[str, Any], content_worth: float | None
) -> tuple[int, float, float | None]:
    """(events, flagged, effective events) for :meth:`telltale.trust.SignalErrors.correct`:
    the row's own counts and ``content_worth`` when it was not sampled, else its scored events
    at the estimated rate, worth what :func:`weigh_rates` found them worth."""
    sampling: dict[str, float] | None = d.get("sampling")
    if sampling is None:
        return d["events"], d["failures"], content_worth
    scored = int(d["scored"])
    return scored, d["rate"] * scored, sampling["effective_events"]
