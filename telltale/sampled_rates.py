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

Slice rows (``rates --by``, :func:`weigh_slice_rates`) are weighed cell by cell the same way;
a slice's ``events`` are counted from ``events`` where its values are named ones (slice values
are made of what every stored event keeps), and estimated as ``Σ w`` over its scored events in
an ``other`` row (the cap's, or merged small cells). Each sampled row's ``sampling`` object
says which (``events_basis``).

Rows without sampled events are left exactly as they were.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from storage import WeightedSums

__all__ = ["effective_for_correction", "estimate", "weigh_rates", "weigh_slice_rates"]

Bucket = Literal["total", "minute", "hour", "day"]
EventsBasis = Literal["counted", "estimated", "scored"]
"""How a sampled row's ``events`` were found: ``counted`` in ``events`` (scored plus left out,
exact), ``estimated`` as ``Σ w`` over the scored events (Horvitz–Thompson), or the ``scored``
events alone (a signal without a field of its own, such as a group, in a row not by slice)."""


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
        if weighted is not None:
            content = worth.get((*key[:3], _values(key[3])))
            basis: EventsBasis = "counted" if key[0] in fields else "scored"
            estimate(d, weighted, d["scored"] + left_out.get(key, 0), content, basis)


def weigh_slice_rates(
    client: Client,
    docs: list[dict[str, Any]],
    keys: list[str],
    *,
    signal: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    min_users: int,
) -> None:
    """Replace the figures of each sampled slice row of ``keys`` by its estimates (``docs``:
    the rows of that grouping, with ``scored``, ``values`` and ``merged``), as
    :func:`weigh_rates` does for plain rows. A row's ``events`` are counted where its values
    are named ones of a signal with a field (scored plus left out, read from ``events``), and
    estimated as ``Σ w`` otherwise (``other``: the slicer's cap or merged small cells)."""
    from storage import (
        OTHER_SLICE,
        effective_events,
        unsampled_slice_events,
        weighted_slice_sums,
    )
    from telltale.signal_store import ClickHouseSignalStore

    sums = weighted_slice_sums(client, keys, signal=signal, model=model, since=since,
                               until=until, min_users=min_users)  # fmt: skip
    if not sums:
        return
    fields = {s.name: s.field for s in ClickHouseSignalStore(client).latest()}
    left_out: dict[tuple[str, str, str, tuple[str, ...]], int] = {}
    worth: dict[tuple[str, str, str, tuple[str, ...]], float] = {}
    for name in {k[0] for k in sums} & set(fields):
        found = unsampled_slice_events(client, name, fields[name], keys, model=model,
                                       since=since, until=until)  # fmt: skip
        left_out |= {(name, *k): n for k, n in found.items()}
        worth |= effective_events(client, name, fields[name], by=keys, model=model,
                                  since=since, until=until)  # fmt: skip
    for d in docs:
        key = (d["signal"], d["model"], d["model_version"], tuple(d["values"]))
        weighted = sums.get(key)
        if weighted is None:
            continue
        content = None if d["merged"] else worth.get(key)  # merged cells: not grouped
        if d["signal"] in fields and OTHER_SLICE not in key[3]:
            estimate(d, weighted, d["scored"] + left_out.get(key, 0), content, "counted")
        else:
            estimate(d, weighted, weighted.weight, content, "estimated")


def estimate(
    d: dict[str, Any],
    weighted: WeightedSums,
    events: float,
    content_worth: float | None,
    basis: EventsBasis,
) -> None:
    """Replace a sampled row's figures by its estimates: the ``events`` seen (``basis`` says
    how they were found), the Hájek rate, ``failures`` among the events seen, and the Wilson
    interval on the scored events' effective count (Kish's size times the share
    ``content_worth`` leaves of them, :func:`storage.effective_events`)."""
    from alerts import wilson_interval_of_rate

    effective = weighted.effective_events
    if content_worth is not None and d["scored"]:
        effective *= min(content_worth / d["scored"], 1.0)
    low, high = wilson_interval_of_rate(weighted.rate, effective)
    d.update(events=events, failures=weighted.rate * events, rate=weighted.rate,
             rate_low=low, rate_high=high,
             sampling={"weighted_events": weighted.weight,
                       "kish_events": weighted.effective_events,
                       "effective_events": effective,
                       "events_basis": basis})  # fmt: skip


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
