"""The detection engine: feeds stored per-minute series and prompt windows to the detectors.

One engine serves both the live monitor and the backtest: :meth:`DetectionEngine.advance` moves
a time cursor forward over ``[position, until)``, reading the counts of that span from
ClickHouse, feeding each detector minute by minute, and recording alarms and resolutions in a
:class:`~alerts.state.DetectionBook`. The live monitor advances a few minutes per cycle; the
backtest advances once over all of history. Both see the same minutes in the same order, so the
backtest says what the monitor would have done.

What is monitored, and when it clears
-------------------------------------
``release_spike`` — per (model, new version, signal), from the version's release until
``spike_horizon_minutes`` later or the model's next release. The new version's minute is paired
with a *baseline minute of the previous release of the same model* (the detector's documented
requirement: a concurrent baseline, so the daily prompt mix cancels):

1. the previous version's traffic in the *same* minute, when it still serves (canary, A/B,
   gradual roll-out): the ideal baseline;
2. otherwise (after a full cut-over) the previous version's same minute ``lag`` earlier, for the
   first of ``spike_baseline_lags_minutes`` (a week, then a day) where it had traffic: the same
   minute of the week (or day) keeps the time-of-day mix comparable. For the first ``lag``
   minutes after the release this is exactly "the same-length window before the release".

A minute with neither is skipped (it carries no information about the difference). How many
minutes used each kind of baseline is reported in the detection's details. The detection clears
when the version is superseded by a newer release, or has had no traffic for
``resolve_after_minutes`` (a roll-back).

``degradation`` — a seasonal quasi-likelihood CUSUM per (model, version, signal)
(:class:`~alerts.degradation.SeasonalCusum`): it learns an hour-of-day × weekday/weekend profile
and the dispersion from the series' own history (``cusum_min_history_minutes`` and
``cusum_min_failures`` before it tests; the monitor's lookback replays that history on start).
It clears after ``resolve_after_minutes`` without a new alarm (the CUSUM restarts after each
alarm, so a persisting shift keeps re-alarming).

``prompt_drift`` — per model, one look every ``drift_every_minutes`` (aligned to the epoch, so
every run tests the same windows). The recent window reaches back to the end of the last tested
window (at least ``drift_recent_minutes``, at most ``drift_longest_window_minutes``): a look with
fewer than ``drift_min_prompts`` prompts is skipped and its prompts wait for the next one, so low
traffic is tested in windows of a prompt count (such a look is tested at the level of the looks
it replaces, :func:`~alerts.drift.look_level`). The reference is the same clock hours on the
previous ``drift_reference_days`` days (seasonal; while an incident is open, only days before it
began); when those hold too few prompts (a model younger than a day) the look is not made,
unless ``drift_reference_minutes`` names a fallback span just before the window. Repeats of
one prompt by one user or session count once, and units (user, else session, else event) are
permuted as wholes. Every look is stored in ``drift_windows``. An
incident opens on a look that fires and resolves after ``drift_clean_looks`` consecutive looks
with a p-value above ``drift_clean_level`` (hysteresis), or when no look could be made for
``resolve_after_minutes`` since its last alarm (the model stopped sending prompts).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from alerts.base import Detection
from alerts.degradation import SeasonalCusum
from alerts.drift import (
    DriftHysteresis,
    PromptDriftDetector,
    collapse_repeats,
    count_window_start,
    explain_drift,
    look_level,
    seasonal_reference_spans,
)
from alerts.release_spike import ReleaseSpikeDetector
from alerts.settings import MonitorSettings
from alerts.state import DetectionBook, DetectionStore
from storage.detections import DriftWindowRow
from storage.embeddings import event_contents
from storage.prompts import UnitSample, prompt_unit_sample
from storage.releases import Release
from storage.series import MinuteCounts, SeriesKey, minute_counts, prompt_models

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["DetectionEngine", "EngineReport", "ReleaseLink", "floor_minute", "link_releases"]

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
SPIKE, DEGRADATION, DRIFT = "release_spike", "degradation", "prompt_drift"


def floor_minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def series_key(model: str, version: str, signal: str) -> str:
    return f"model={model}/{version}/signal={signal}"


@dataclass(frozen=True)
class ReleaseLink:
    """A release with its predecessor (the baseline) and successor (when it was superseded)."""

    model: str
    version: str
    released_at: datetime
    source: str
    previous: str | None
    superseded_at: datetime | None


def link_releases(releases: Iterable[Release]) -> dict[tuple[str, str], ReleaseLink]:
    """Order each model's releases by time and link each to the one before and after it."""
    by_model: dict[str, list[Release]] = {}
    for r in releases:
        by_model.setdefault(r.model, []).append(r)
    links = {}
    for model, items in by_model.items():
        items.sort(key=lambda r: (r.released_at, r.model_version))
        for i, r in enumerate(items):
            links[(model, r.model_version)] = ReleaseLink(
                model=model,
                version=r.model_version,
                released_at=r.released_at.astimezone(UTC),
                source=r.source,
                previous=items[i - 1].model_version if i else None,
                superseded_at=items[i + 1].released_at.astimezone(UTC)
                if i + 1 < len(items)
                else None,
            )
    return links


@dataclass
class EngineReport:
    """What one :meth:`DetectionEngine.advance` did."""

    since: datetime | None = None
    until: datetime | None = None
    spike_series: int = 0
    cusum_series: int = 0
    drift_looks: int = 0
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "spike_series": self.spike_series,
            "cusum_series": self.cusum_series,
            "drift_looks": self.drift_looks,
            "opened": list(self.opened),
            "resolved": list(self.resolved),
        }


@dataclass
class _Spike:
    link: ReleaseLink
    signal: str
    detector: ReleaseSpikeDetector
    next_minute: datetime
    test_end: datetime  # the detector is fed before this minute only
    last_traffic: datetime
    baselines: dict[str, int] = field(default_factory=dict)  # kind -> minutes

    @property
    def key(self) -> str:
        return series_key(self.link.model, self.link.version, self.signal)


@dataclass
class _Cusum:
    model: str
    version: str
    signal: str
    detector: SeasonalCusum
    start: datetime  # the minute of update number 1
    next_minute: datetime
    last_traffic: datetime

    @property
    def key(self) -> str:
        return series_key(self.model, self.version, self.signal)


class DetectionEngine:
    """Runs the three detectors over stored data from a start time onwards (module docstring)."""

    def __init__(
        self,
        client: Client,
        settings: MonitorSettings,
        book: DetectionBook,
        store: DetectionStore,
        *,
        start: datetime,
        drift_catchup_looks: int | None = None,
    ) -> None:
        self._client = client
        self._s = settings
        self._book = book
        self._store = store
        self.position = floor_minute(start)
        self._catchup = drift_catchup_looks
        self._spikes: dict[str, _Spike] = {}
        self._cusums: dict[str, _Cusum] = {}
        self._drift_done = store.drift_resume_points()
        self._drift_pending = dict(self._drift_done)  # model -> start of the next window
        self._drift_incidents: dict[str, DriftHysteresis] = {}
        self._drift_since: dict[str, datetime] = {}  # model -> first window of an open incident
        self._resolve_after = timedelta(minutes=settings.resolve_after_minutes)

    def advance(self, until: datetime, releases: Sequence[Release]) -> EngineReport:
        """Process every minute in ``[position, until)`` and move the cursor to ``until``."""
        until = floor_minute(until)
        report = EngineReport(since=self.position, until=until)
        if until <= self.position:
            return report
        start = self.position
        counts = minute_counts(self._client, start, until)
        links = link_releases(releases)
        self._run_spikes(counts, links, start, until, report)
        self._run_cusums(counts, start, until, report)
        self._run_drift(start, until, report)
        self.position = until
        report.spike_series, report.cusum_series = len(self._spikes), len(self._cusums)
        return report

    # -- release spike -------------------------------------------------------------------------

    def _run_spikes(
        self,
        counts: dict[SeriesKey, MinuteCounts],
        links: dict[tuple[str, str], ReleaseLink],
        start: datetime,
        until: datetime,
        report: EngineReport,
    ) -> None:
        horizon = timedelta(minutes=self._s.spike_horizon_minutes)
        for model, version, signal in counts:
            key = series_key(model, version, signal)
            link = links.get((model, version))
            if key in self._spikes or link is None or link.previous is None:
                continue
            first = max(floor_minute(link.released_at), start)
            test_end = link.released_at + horizon
            if link.superseded_at is not None:
                test_end = min(test_end, link.superseded_at)
            if first >= test_end:
                continue
            self._spikes[key] = self._new_spike(link, signal, first, test_end)
        # Open detections whose series is not tracked (older than this monitor's history) are
        # followed for their resolution only.
        for row in self._book.open_rows():
            link = links.get((row.model, row.model_version))
            if row.detector == SPIKE and row.key not in self._spikes and link is not None:
                self._spikes[row.key] = self._new_spike(link, row.signal, start, start)
        lagged: dict[tuple[str, str, int], dict[SeriesKey, MinuteCounts]] = {}
        for key, spike in list(self._spikes.items()):
            link = links.get((spike.link.model, spike.link.version), spike.link)
            spike.link = link
            if link.superseded_at is not None:
                spike.test_end = min(spike.test_end, link.superseded_at)
            self._feed_spike(spike, counts, lagged, until, report)
            if spike.next_minute >= spike.test_end and self._book.episode(SPIKE, key) is None:
                del self._spikes[key]

    def _new_spike(
        self, link: ReleaseLink, signal: str, first: datetime, test_end: datetime
    ) -> _Spike:
        detector = ReleaseSpikeDetector(
            alpha=self._s.spike_alpha, mixture_tau=self._s.spike_mixture_tau
        )
        return _Spike(link, signal, detector, first, test_end, last_traffic=first - MINUTE)

    def _baseline(
        self,
        spike: _Spike,
        minute: datetime,
        counts: dict[SeriesKey, MinuteCounts],
        lagged: dict[tuple[str, str, int], dict[SeriesKey, MinuteCounts]],
        until: datetime,
    ) -> tuple[str, tuple[int, int]] | None:
        model, previous = spike.link.model, spike.link.previous
        assert previous is not None
        base_key = (model, previous, spike.signal)
        same = counts.get(base_key, {}).get(minute)
        if same is not None and same[0] > 0:
            return "concurrent", same
        for lag in self._s.spike_baseline_lags_minutes:
            cache_key = (model, previous, lag)
            if cache_key not in lagged:
                shift = timedelta(minutes=lag)
                lagged[cache_key] = minute_counts(
                    self._client,
                    self.position - shift,
                    until - shift,
                    model=model,
                    model_version=previous,
                )
            earlier = lagged[cache_key].get(base_key, {}).get(minute - timedelta(minutes=lag))
            if earlier is not None and earlier[0] > 0:
                return f"lag_{lag}m", earlier
        return None

    def _feed_spike(
        self,
        spike: _Spike,
        counts: dict[SeriesKey, MinuteCounts],
        lagged: dict[tuple[str, str, int], dict[SeriesKey, MinuteCounts]],
        until: datetime,
        report: EngineReport,
    ) -> None:
        key, link = spike.key, spike.link
        own = counts.get((link.model, link.version, spike.signal), {})
        minute = spike.next_minute
        updated = False
        while minute < until:
            n_new, k_new = own.get(minute, (0, 0))
            if n_new > 0:
                spike.last_traffic = minute
            if minute < spike.test_end and n_new > 0:
                base = self._baseline(spike, minute, counts, lagged, until)
                if base is not None:
                    kind, (n_base, k_base) = base
                    spike.detector.update(n_new, k_new, n_base, k_base)
                    spike.baselines[kind] = spike.baselines.get(kind, 0) + 1
                    updated = True
                    detection = spike.detector.detection(key, minute + MINUTE)
                    if detection is not None:
                        outcome = self._book.alarm(
                            detection, model=link.model, model_version=link.version,
                            signal=spike.signal, details=self._spike_details(spike),
                        )  # fmt: skip
                        if outcome == "opened":
                            report.opened.append(f"{SPIKE} {key} at {detection.opened_at}")
            self._maybe_resolve_spike(spike, minute, report)
            minute += MINUTE
        spike.next_minute = max(minute, spike.next_minute)
        if updated:
            self._refresh_spike(spike, until)

    def _refresh_spike(self, spike: _Spike, at: datetime) -> None:
        """Bring an open detection's effect and confidence sequence up to the latest minute."""
        s = spike.detector.state
        if not s.fired:
            return
        self._book.refresh(
            Detection(
                detector=SPIKE, key=spike.key, opened_at=at, statistic=s.e_value,
                threshold=1.0 / spike.detector.alpha, p_value=s.p_value, e_value=s.e_value,
                effect=s.effect, effect_low=s.cs_low, effect_high=s.cs_high,
                details={"minutes": s.minutes, "n_new": s.n_new, "k_new": s.k_new,
                         "n_base": s.n_base, "k_base": s.k_base, "odds_ratio": s.odds_ratio},
            ),
            self._spike_details(spike),
        )  # fmt: skip

    def _spike_details(self, spike: _Spike) -> dict[str, Any]:
        return {
            "released_at": spike.link.released_at.isoformat(),
            "release_source": spike.link.source,
            "baseline_version": spike.link.previous,
            "baseline_minutes": dict(spike.baselines),
        }

    def _maybe_resolve_spike(self, spike: _Spike, minute: datetime, report: EngineReport) -> None:
        episode = self._book.episode(SPIKE, spike.key)
        if episode is None:
            return
        end_of_minute = minute + MINUTE
        superseded = spike.link.superseded_at
        if superseded is not None and end_of_minute >= superseded:
            at, reason = superseded, "superseded by a newer release"
        elif end_of_minute - (spike.last_traffic + MINUTE) >= self._resolve_after:
            at = spike.last_traffic + MINUTE + self._resolve_after
            reason = "no traffic from the version"
        else:
            return
        self._refresh_spike(spike, end_of_minute)  # the final figures go into the resolve row
        row = self._book.resolve(SPIKE, spike.key, at, reason)
        if row is not None:
            report.resolved.append(f"{SPIKE} {spike.key} at {row.resolved_at}")

    # -- slow degradation ----------------------------------------------------------------------

    def _run_cusums(
        self,
        counts: dict[SeriesKey, MinuteCounts],
        start: datetime,
        until: datetime,
        report: EngineReport,
    ) -> None:
        for (model, version, signal), minutes in counts.items():
            key = series_key(model, version, signal)
            if key not in self._cusums and any(n > 0 for n, _ in minutes.values()):
                first = min(m for m, (n, _) in minutes.items() if n > 0)
                self._cusums[key] = self._new_cusum(model, version, signal, first)
        for row in self._book.open_rows():
            if row.detector == DEGRADATION and row.key not in self._cusums:
                self._cusums[row.key] = self._new_cusum(
                    row.model, row.model_version, row.signal, start
                )
        idle = timedelta(minutes=self._s.idle_drop_minutes)
        for key, series in list(self._cusums.items()):
            self._feed_cusum(series, counts.get((series.model, series.version, series.signal), {}),
                             until, report)  # fmt: skip
            quiet = series.next_minute - (series.last_traffic + MINUTE)
            if quiet >= idle and self._book.episode(DEGRADATION, key) is None:
                del self._cusums[key]

    def _new_cusum(self, model: str, version: str, signal: str, first: datetime) -> _Cusum:
        detector = SeasonalCusum(
            delta=self._s.cusum_delta,
            arl0_minutes=self._s.cusum_arl0_minutes,
            min_history_minutes=self._s.cusum_min_history_minutes,
            min_failures=self._s.cusum_min_failures,
            history_minutes=self._s.cusum_history_minutes,
        )
        return _Cusum(model, version, signal, detector, first, first, last_traffic=first - MINUTE)

    def _feed_cusum(
        self, series: _Cusum, own: MinuteCounts, until: datetime, report: EngineReport
    ) -> None:
        key = series.key
        minute = series.next_minute
        while minute < until:
            n, k = own.get(minute, (0, 0))
            if n > 0:
                series.last_traffic = minute
            state = series.detector.update(n, k, minute)
            detection = series.detector.detection(key, minute + MINUTE)
            if detection is not None:
                change_at = state.change_at
                outcome = self._book.alarm(
                    detection, model=series.model, model_version=series.version,
                    signal=series.signal,
                    details={"change_at": change_at.isoformat() if change_at else None},
                )  # fmt: skip
                if outcome == "opened":
                    report.opened.append(f"{DEGRADATION} {key} at {detection.opened_at}")
            episode = self._book.episode(DEGRADATION, key)
            if episode is not None and minute + MINUTE - episode.last_alarm >= self._resolve_after:
                row = self._book.resolve(
                    DEGRADATION, key, episode.last_alarm + self._resolve_after,
                    f"no new alarm for {self._s.resolve_after_minutes} minutes",
                )  # fmt: skip
                if row is not None:
                    report.resolved.append(f"{DEGRADATION} {key} at {row.resolved_at}")
            minute += MINUTE
        series.next_minute = minute

    # -- prompt drift --------------------------------------------------------------------------

    def _run_drift(self, start: datetime, until: datetime, report: EngineReport) -> None:
        s = self._s
        every = timedelta(minutes=s.drift_every_minutes)
        recent = timedelta(minutes=s.drift_recent_minutes)
        reference = timedelta(minutes=s.drift_reference_minutes)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        if epoch + ((start - epoch) // every + 1) * every > until:
            return  # no window ends in (start, until]: most cycles of a per-minute monitor
        models = set(prompt_models(self._client, start - recent - reference, until, s.drift_field))
        models |= {row.model for row in self._book.open_rows() if row.detector == DRIFT}
        for model in sorted(models):
            after = max(start, self._drift_done.get(model, start))
            # Window ends e with after < e <= until, on the epoch-aligned grid.
            end = epoch + ((after - epoch) // every + 1) * every
            ends = []
            while end <= until:
                ends.append(end)
                end += every
            if self._catchup is not None:
                ends = ends[-self._catchup :]
            key = f"model={model}"
            incident = self._drift_incident(model, key)
            windows: list[DriftWindowRow] = []
            for end in ends:
                look = self._drift_look(model, end, recent, reference, incident)
                self._drift_done[model] = end
                episode = self._book.episode(DRIFT, key)
                if look == "waiting":  # prompts are arriving, slowly: the window grows
                    continue
                if look == "untestable":
                    if episode is not None and end - episode.last_alarm >= self._resolve_after:
                        reason = "too few prompts to test since the last alarm"
                        self._close_drift(model, key, end, report, reason)
                        incident = self._drift_incident(model, key)  # a closed one
                    continue
                window, detection, fired = look
                windows.append(window)
                outcome = incident.update(fired, window.p_value)
                if detection is not None:
                    if outcome == "opened":
                        self._drift_since[model] = window.window_start
                    if self._book.alarm(detection, model=model) == "opened":
                        report.opened.append(f"{DRIFT} {key} at {detection.opened_at}")
                elif outcome == "resolved" or (episode is not None and not incident.is_open):
                    reason = (f"{s.drift_clean_looks} consecutive looks with a p-value above "
                              f"{s.drift_clean_level}")  # fmt: skip
                    self._close_drift(model, key, end, report, reason)
            self._store.save_drift_windows(windows)
            report.drift_looks += len(windows)

    def _drift_incident(self, model: str, key: str) -> DriftHysteresis:
        """The model's incident state; an incident still open in the book (a restarted monitor)
        is resumed open, compared with the days before its first window."""
        incident = self._drift_incidents.get(model)
        if incident is None:
            episode = self._book.episode(DRIFT, key)
            incident = DriftHysteresis(
                self._s.drift_clean_level, self._s.drift_clean_looks, is_open=episode is not None
            )
            self._drift_incidents[model] = incident
            if episode is not None:
                began = episode.row.details.get("window_start")
                self._drift_since[model] = (
                    datetime.fromisoformat(began) if isinstance(began, str)
                    else episode.row.opened_at
                )  # fmt: skip
        return incident

    def _close_drift(
        self, model: str, key: str, at: datetime, report: EngineReport, reason: str
    ) -> None:
        self._drift_incidents.pop(model, None)
        self._drift_since.pop(model, None)
        row = self._book.resolve(DRIFT, key, at, reason)
        if row is not None:
            report.resolved.append(f"{DRIFT} {key} at {row.resolved_at}")

    def _drift_look(
        self,
        model: str,
        end: datetime,
        recent: timedelta,
        reference: timedelta,
        incident: DriftHysteresis,
    ) -> tuple[DriftWindowRow, Detection | None, bool] | Literal["waiting", "untestable"]:
        """One look: the stored window, its detection if it fired, and whether it fired.

        Without a test: ``"waiting"`` when the recent window holds some prompts, too few yet,
        and can still grow (they wait for the next look), ``"untestable"`` when it is empty or
        as long as allowed, or when the reference holds too few prompts."""
        s = self._s
        longest = timedelta(minutes=s.drift_longest_window_minutes)
        start = count_window_start(end, self._drift_pending.get(model), recent, longest)
        new = prompt_unit_sample(self._client, model, [(start, end)], field=s.drift_field,
                                 limit=s.drift_recent_sample)  # fmt: skip
        if len(new.event_ids) < s.drift_min_prompts:
            if new.event_ids and end - start < longest:  # they wait for the next look
                self._drift_pending[model] = start
                return "waiting"
            return "untestable"
        since = self._drift_since.get(model) if incident.is_open else None
        spans = seasonal_reference_spans(start, end, s.drift_reference_days, before=since)
        old = self._reference(model, spans, new.embedder_id)
        reference_kind = "seasonal"
        if len(old.event_ids) < s.drift_min_prompts and s.drift_reference_minutes > 0:
            reference_kind = "previous"
            spans = [(start - reference, start)]
            old = self._reference(model, spans, new.embedder_id)
        if len(old.event_ids) < s.drift_min_prompts:
            self._drift_pending[model] = end  # nothing to compare with: start afresh
            return "untestable"
        self._drift_pending[model] = end
        old, new = _once_per_unit(old), _once_per_unit(new)
        x = np.asarray(old.vectors, dtype=np.float64)
        y = np.asarray(new.vectors, dtype=np.float64)
        seed = int.from_bytes(
            hashlib.sha256(f"{s.seed}|{model}|{end.isoformat()}".encode()).digest()[:4], "big"
        )
        every = timedelta(minutes=s.drift_every_minutes)
        detector = PromptDriftDetector(
            alpha=s.drift_alpha, horizon_looks=s.drift_horizon_looks,
            n_permutations=s.drift_permutations, seed=seed, explain_clusters=0,
            level=look_level(s.drift_alpha, s.drift_horizon_looks, end - start, every),
        )  # fmt: skip
        state = detector.update(x, y, old.units, new.units)
        clusters = self._explain(x, y, old.event_ids, new.event_ids, seed)
        window = DriftWindowRow(
            model=model, window_start=start, window_end=end, statistic=state.p_value,
            threshold=state.level, p_value=state.p_value, reference_size=len(x),
            recent_size=len(y), clusters=clusters,
        )  # fmt: skip
        if not state.fired:
            return window, None, False
        top = clusters[0] if clusters else None
        detection = Detection(
            detector=DRIFT, key=f"model={model}", opened_at=end, statistic=state.p_value,
            threshold=state.level, p_value=state.p_value,
            effect=float(top["change"]) if top else None,
            details={
                "mmd2": state.mmd2, "bandwidth": state.bandwidth,
                "window_start": start.isoformat(), "window_end": end.isoformat(),
                "reference": reference_kind,
                "reference_spans": [[a.isoformat(), b.isoformat()] for a, b in spans],
                "reference_start": spans[-1][0].isoformat(),
                "n_reference": state.n_reference, "n_recent": state.n_recent,
                "units_reference": len(set(old.units)), "units_recent": len(set(new.units)),
                "embedder_id": new.embedder_id, "clusters": clusters[:3],
            },
        )  # fmt: skip
        return window, detection, True

    def _reference(
        self, model: str, spans: list[tuple[datetime, datetime]], embedder_id: str
    ) -> UnitSample:
        s = self._s
        return prompt_unit_sample(
            self._client, model, spans, field=s.drift_field, limit=s.drift_reference_sample,
            embedder_id=embedder_id,
        )  # fmt: skip

    def _explain(
        self,
        x: np.ndarray[Any, np.dtype[np.float64]],
        y: np.ndarray[Any, np.dtype[np.float64]],
        old_ids: list[str],
        new_ids: list[str],
        seed: int,
    ) -> list[dict[str, Any]]:
        """Cluster shares of both windows, largest growth first, with example prompt texts."""
        if self._s.drift_clusters == 0:
            return []
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        # k-means' OpenMP threads spin against each other on a busy host (seconds instead of
        # tens of milliseconds); one thread is steady, and the monitor is a background job.
        with threadpool_limits(limits=1, user_api="openmp"):
            k = min(self._s.drift_clusters, len(x) + len(y))
            shifts = explain_drift(x, y, k, seed=seed)
        wanted = {old_ids[i] for c in shifts for i in c.reference_examples}
        wanted |= {new_ids[i] for c in shifts for i in c.recent_examples}
        texts = event_contents(self._client, sorted(wanted), self._s.drift_field)
        return [
            {
                "cluster": c.cluster,
                "reference_share": c.reference_share,
                "recent_share": c.recent_share,
                "change": c.change,
                "reference_examples": _distinct_texts(texts, old_ids, c.reference_examples),
                "recent_examples": _distinct_texts(texts, new_ids, c.recent_examples),
            }
            for c in shifts
        ]


def _distinct_texts(texts: dict[str, str], ids: list[str], picks: Iterable[int]) -> list[str]:
    """The example prompts, each text once (two events may carry the same prompt)."""
    return list(dict.fromkeys(texts.get(ids[i], "") for i in picks))


def _once_per_unit(sample: UnitSample) -> UnitSample:
    """Repeats of one prompt by one unit (same user or session, same embedding) count once."""
    keep = collapse_repeats(sample.vectors, sample.units) if sample.vectors else []
    if len(keep) == len(sample.event_ids):
        return sample
    return UnitSample(
        sample.embedder_id,
        [sample.event_ids[i] for i in keep],
        [sample.units[i] for i in keep],
        [sample.vectors[i] for i in keep],
    )
