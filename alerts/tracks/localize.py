"""Where a release regression concentrates: the slices with the largest excess failures.

For one (model, new version, signal), each slice (one key, ``locale=de``, and each pair of keys)
gets ``excess(s) = k_new(s) - n_new(s) * p_base(s)``, ``p_base(s)`` the baseline version's rate
in the slice shrunk towards its overall rate by ``prior_events``, with Wilson and Newcombe
intervals that describe the slices of a detection the always-valid release test already decided
(they are not a test). A pair carrying at least ``nested_share`` of a single-key parent's excess
is listed before that parent; slices covering all traffic or with fewer than ``min_events`` are
not listed. The new version's events are read from ``[released_at, at)``, the baseline's from
``[released_at - max(at - released_at, min_baseline), at)``, from the score rows' slice values
(``signal_scores.slices``, ``FINAL``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import TYPE_CHECKING, Any

from alerts.detectors.confidence import newcombe_interval, wilson_interval

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "Localization",
    "ReleaseLocalizer",
    "SliceExcess",
    "localize",
    "localize_counts",
    "slice_label",
]

log = logging.getLogger(__name__)


def slice_label(keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    """``locale=de & customer_tier=free``; the empty value reads ``(unset)``."""
    return " & ".join(f"{k}={v or '(unset)'}" for k, v in zip(keys, values, strict=True))


@dataclass(frozen=True)
class SliceExcess:
    """One slice of the new version's traffic and its excess failures over the baseline."""

    keys: tuple[str, ...]
    values: tuple[str, ...]
    events: int
    failures: int
    rate: float
    rate_low: float
    rate_high: float
    baseline_events: int
    baseline_failures: int
    baseline_rate: float
    excess: float
    excess_low: float
    excess_high: float
    share: float

    @property
    def label(self) -> str:
        return slice_label(self.keys, self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "slice": self.label,
            "keys": list(self.keys),
            "values": list(self.values),
            "events": self.events,
            "failures": self.failures,
            "rate": self.rate,
            "rate_interval": [self.rate_low, self.rate_high],
            "baseline_events": self.baseline_events,
            "baseline_failures": self.baseline_failures,
            "baseline_rate": self.baseline_rate,
            "excess_failures": self.excess,
            "excess_interval": [self.excess_low, self.excess_high],
            "share_of_excess": self.share,
        }


@dataclass(frozen=True)
class Localization:
    """The slices of one release regression, most telling first."""

    events: int
    failures: int
    baseline_events: int
    baseline_failures: int
    total_excess: float
    slices: tuple[SliceExcess, ...] = field(default_factory=tuple)

    @property
    def top(self) -> SliceExcess | None:
        return self.slices[0] if self.slices else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "top": self.top.label if self.top else "",
            "events": self.events,
            "failures": self.failures,
            "baseline_events": self.baseline_events,
            "baseline_failures": self.baseline_failures,
            "total_excess_failures": self.total_excess,
            "slices": [s.as_dict() for s in self.slices],
        }


Combination = tuple[tuple[str, str], ...]
"""An event's slice values as sorted ``(key, value)`` pairs."""


def localize_counts(
    new: Mapping[Combination, tuple[int, int]],
    base: Mapping[Combination, tuple[int, int]],
    *,
    top: int = 10,
    min_events: int = 20,
    prior_events: float = 10.0,
    nested_share: float = 0.8,
    pairs: bool = True,
) -> Localization:
    """Rank slices by excess failures from ``(events, failures)`` per combination of values.

    ``new`` and ``base`` map each combination of slice values seen (one entry per distinct set
    of an event's values) to that combination's events and failures, for the new version and
    the baseline. Pure: the module docstring explains the arithmetic and the ranking.
    """
    n_all = sum(n for n, _ in new.values())
    k_all = sum(k for _, k in new.values())
    nb_all = sum(n for n, _ in base.values())
    kb_all = sum(k for _, k in base.values())
    p_base = kb_all / nb_all if nb_all else 0.0
    total = k_all - n_all * p_base

    def aggregate(
        counts: Mapping[Combination, tuple[int, int]],
    ) -> dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]]:
        out: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = defaultdict(lambda: [0, 0])
        for combo, (n, k) in counts.items():
            singles = [((key,), (value,)) for key, value in combo]
            pair_items = (
                [((a[0], b[0]), (a[1], b[1])) for a, b in combinations(combo, 2)] if pairs else []
            )
            for item in (*singles, *pair_items):
                out[item][0] += n
                out[item][1] += k
        return out

    new_slices, base_slices = aggregate(new), aggregate(base)
    whole = {item for item, (n, _) in new_slices.items() if len(item[0]) == 1 and n >= n_all}
    found: list[SliceExcess] = []
    for item, (n, k) in new_slices.items():
        keys, values = item
        if n < min_events or n >= n_all:
            continue
        if len(keys) == 2 and any(
            ((key,), (value,)) in whole for key, value in zip(*item, strict=True)
        ):
            continue  # a pair with an all-covering value is the other key's single slice
        nb, kb = base_slices.get(item, [0, 0])
        p_slice = (kb + prior_events * p_base) / (nb + prior_events)
        excess = k - n * p_slice
        if excess <= 0:
            continue
        low, high = newcombe_interval(k, n, kb, nb) if nb else (-1.0, 1.0)
        rate_low, rate_high = wilson_interval(k, n)
        found.append(SliceExcess(
            keys=keys, values=values, events=n, failures=k, rate=k / n, rate_low=rate_low,
            rate_high=rate_high, baseline_events=nb, baseline_failures=kb,
            baseline_rate=p_slice, excess=excess, excess_low=n * low, excess_high=n * high,
            share=excess / total if total > 0 else math.nan,
        ))  # fmt: skip
    return Localization(
        events=n_all, failures=k_all, baseline_events=nb_all, baseline_failures=kb_all,
        total_excess=total, slices=tuple(_rank(found, nested_share)[:top]),
    )  # fmt: skip


def _rank(found: list[SliceExcess], nested_share: float) -> list[SliceExcess]:
    """By excess, with a pair before a single-key parent whose excess it mostly carries."""
    singles = {(s.keys[0], s.values[0]): s.excess for s in found if len(s.keys) == 1}
    order: dict[SliceExcess, float] = {}
    for s in found:
        score = s.excess
        if len(s.keys) == 2:
            for parent in zip(s.keys, s.values, strict=True):
                parent_excess = singles.get(parent)
                if parent_excess is not None and s.excess >= nested_share * parent_excess:
                    score = max(score, parent_excess)
        order[s] = score
    return sorted(found, key=lambda s: (-order[s], -len(s.keys), -s.excess, s.label))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _combination_counts(
    client: Client,
    model: str,
    version: str,
    signal: str,
    since: datetime,
    until: datetime,
) -> dict[Combination, tuple[int, int]]:
    rows = client.query(
        """
        SELECT arraySort(arrayZip(mapKeys(slices), mapValues(slices))) AS combo,
               uniqExact(event_id) AS n, uniqExactIf(event_id, flagged) AS k
        FROM signal_scores FINAL
        WHERE model = {model:String} AND model_version = {version:String}
          AND signal = {signal:String}
          AND timestamp >= {since:DateTime64(3, 'UTC')} AND timestamp < {until:DateTime64(3, 'UTC')}
        GROUP BY combo
        """,
        parameters={
            "model": model, "version": version, "signal": signal,
            "since": _utc(since), "until": _utc(until),
        },
    ).result_rows  # fmt: skip
    return {tuple((str(a), str(b)) for a, b in r[0]): (int(r[1]), int(r[2])) for r in rows}


def localize(
    client: Client,
    *,
    model: str,
    version: str,
    baseline_version: str,
    signal: str,
    released_at: datetime,
    at: datetime,
    min_baseline: timedelta = timedelta(hours=1),
    **options: Any,
) -> Localization:
    """Read the slice counts of a release detection and rank them (module docstring)."""
    new = _combination_counts(client, model, version, signal, released_at, at)
    span = max(at - released_at, min_baseline)
    base = _combination_counts(client, model, baseline_version, signal, released_at - span, at)
    return localize_counts(new, base, **options)


class ReleaseLocalizer:
    """Localises each release detection once, when it first fires, for its details.

    A failure to localise is logged and reported in the details; it never costs the detection.
    """

    def __init__(self, client: Client, top: int = 5) -> None:
        self._client = client
        self._top = top
        self._done: dict[str, dict[str, Any]] = {}

    def details(
        self,
        key: str,
        *,
        fired: bool,
        model: str,
        version: str,
        baseline_version: str | None,
        signal: str,
        released_at: datetime,
        at: datetime,
    ) -> dict[str, Any]:
        """``{"localization": {...}}`` for a fired detection, else nothing."""
        if not fired or baseline_version is None:
            return {}
        if key not in self._done:
            try:
                found = localize(
                    self._client, model=model, version=version,
                    baseline_version=baseline_version, signal=signal,
                    released_at=released_at, at=at, top=self._top,
                )  # fmt: skip
                self._done[key] = {"localization": _json_safe(found.as_dict())}
            except Exception as exc:  # a detection must never be lost to its explanation
                log.warning("could not localise %s: %s: %s", key, type(exc).__name__, exc)
                self._done[key] = {"localization_error": type(exc).__name__}
        return self._done[key]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
