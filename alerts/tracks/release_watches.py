"""What a release test watches beside the failure signals: latency and usage per event.

Each watched quantity becomes a failure-like indicator per unit (one user's retries of one request
are one unit, :func:`storage.unit_counts`): did one of the unit's events exceed a threshold fixed
from the previous version before the release? ``latency.p95``: slower than the baseline units' 95th
percentile; ``usage.cost_per_event``: costlier than the baseline's median (at each version's price,
``TELLTALE_USAGE_PRICES``), or, where either version is unpriced, ``usage.output_tokens``: more
output tokens than the baseline's median (the quantiles are settings). When the new version's units
are distributed as the baseline's within a bucket (the null), both versions exceed one fixed
threshold equally often, so the release test's two-proportion e-process, its buckets, variance
components and lagged baselines apply, and its ``alpha`` holds as it does for a failure signal (the
day-level variance read on the log-odds scale at the baseline's share:
:meth:`~alerts.detectors.dispersion.Dispersion.log_odds_day_variance`). A release that doubles the
tokens of an answer moves most of its units above the baseline's median; one whose latency doubles
moves 40 % of them above the baseline's p95 instead of 5 % (log-normal latency, log-sd 0.5).

**Frozen at the release.** A threshold is the quantile, over the previous version's units of
the ``history_days`` before the release, of each unit's largest value, as stored at the release
instant (back-fills count, as in :func:`storage.unit_counts`), computed once when the test
starts; a restarted monitor re-derives the same one. Per unit and not per event, so that a retry
storm's slow copies do not fill the tail and lift the threshold out of reach. A watch whose
baseline holds fewer than ``watch_min_units`` units with the quantity is not run; events without
the quantity are left out of its counts. Each watch counts in the release's Bonferroni family
(``alpha / S``) like a signal. The threshold comes from data that a lagged baseline may reuse,
which biases the baseline's share above it by about one unit in the history's count: negligible
above the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage import (
    Exceedance,
    MinuteCounts,
    Price,
    Quantity,
    exceedance_counts,
    quantity_quantile,
)

if TYPE_CHECKING:
    from alerts.tracks.base import TrackSetup
    from alerts.tracks.span import ReleaseLink

__all__ = ["UNITS", "Watch", "Watches", "watch_name"]

UNITS: dict[Quantity, str] = {
    "latency_ms": "ms",
    "output_tokens": "output tokens",
    "cost": "in price-table currency",
}
"""What a watched quantity is measured in, as pages and incident details say it."""

_NAMES: dict[Quantity, str] = {
    "latency_ms": "latency",
    "output_tokens": "usage.output_tokens",
    "cost": "usage.cost_per_event",
}


def watch_name(quantity: Quantity, level: float) -> str:
    """The signal name of a watch: ``latency.p95`` (latency names its quantile), else the
    quantity's name (``usage.cost_per_event``, ``usage.output_tokens``)."""
    if quantity == "latency_ms":
        return f"latency.p{level * 100:g}"
    return _NAMES[quantity]


@dataclass(frozen=True)
class Watch:
    """One watched quantity of one release, its threshold frozen at the release."""

    name: str
    quantity: Quantity
    level: float
    threshold: float
    baseline_version: str
    baseline_units: int

    @property
    def unit(self) -> str:
        return UNITS[self.quantity]

    def as_dict(self) -> dict[str, Any]:
        """The ``watch`` entry of the signal's figures in the incident's details."""
        return {
            "quantity": self.quantity,
            "unit": self.unit,
            "level": self.level,
            "threshold": self.threshold,
            "baseline_units": self.baseline_units,
            "indicator": f"units above {self.threshold:.4g} {self.unit}, "
            f"{self.baseline_version}'s p{self.level * 100:g} before the release",
        }


class Watches:
    """Freezes a release's watches and reads their per-minute counts (module docstring)."""

    def __init__(self, setup: TrackSetup) -> None:
        self._setup = setup
        self._s = setup.settings.release_spike

    def freeze(self, link: ReleaseLink, since: datetime, until: datetime) -> tuple[Watch, ...]:
        """The watches of ``link``'s release, thresholds from the previous version's units in
        ``[since, until)`` as stored at the release."""
        s, previous = self._s, link.previous
        assert previous is not None
        wanted: list[tuple[Quantity, float]] = []
        if s.watch_latency:
            wanted.append(("latency_ms", s.latency_quantile))
        if s.watch_usage:
            priced = all(self._price(link.model, v) for v in (previous, link.version))
            wanted.append(("cost" if priced else "output_tokens", s.usage_quantile))
        watches = []
        for quantity, level in wanted:
            threshold, units = quantity_quantile(
                self._setup.client, since, until, model=link.model, model_version=previous,
                quantity=quantity, level=level, price=self._price(link.model, previous),
                repeat_window_minutes=self._setup.repeat_window_minutes, as_of=link.released_at,
                backfill_after_s=self._setup.backfill_after_s,
            )  # fmt: skip
            if threshold is not None and units >= s.watch_min_units:
                name = watch_name(quantity, level)
                watches.append(Watch(name, quantity, level, threshold, previous, units))
        return tuple(watches)

    def counts(
        self,
        link: ReleaseLink,
        watches: tuple[Watch, ...],
        version: str,
        since: datetime,
        until: datetime,
        as_of: datetime | None = None,
    ) -> dict[str, MinuteCounts]:
        """Per watch name: units holding the quantity and those above its threshold, per minute
        of ``[since, until)``, for ``version`` of the release's model."""
        if not watches:
            return {}
        found = exceedance_counts(
            self._setup.client, since, until, model=link.model, model_version=version,
            watches=[Exceedance(w.name, w.quantity, w.threshold) for w in watches],
            price=self._price(link.model, version),
            repeat_window_minutes=self._setup.repeat_window_minutes, as_of=as_of,
            backfill_after_s=self._setup.backfill_after_s,
        )  # fmt: skip
        return {name: minutes for (_, _, name), minutes in found.items()}

    def _price(self, model: str, version: str) -> Price | None:
        prices = self._setup.prices
        return prices.lookup(model, version) if prices is not None else None
