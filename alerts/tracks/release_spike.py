"""The release-spike track: one incident per release, one anytime-valid test per signal in it.

Per release with a previous release, from its release until ``horizon_minutes`` later or the
next release, every signal gets a :class:`~alerts.detectors.release_spike.ReleaseSpikeDetector`
at ``alpha / S`` (``S`` signals in the family: Bonferroni on e-values), so a release pages once,
with key ``model=M/VERSION``, listing every signal whose test fired. The baseline of a minute is
the previous version in the same minute while it still serves (concurrent), else the same clock
span ``lag`` earlier on a day of the same weekday type with traffic in that hour (lagged, read
as of the same lateness; one new-version day against one baseline day forms a block). Minutes
are summed into adaptive buckets; the variance components come from the previous version's last
``history_days``. The detection clears when the version is superseded, or after
``resolve_after`` without traffic. The e-processes are not stored: a restarted monitor replays
from the release's first minute, so the rebuilt test is the one the first monitor ran. Beside
the signals, each release's latency and usage per event are tested the same way, as the share
of units above a threshold frozen from the baseline (:mod:`alerts.tracks.release_watches`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alerts.detectors.base import Detection
from alerts.detectors.buckets import AdaptiveBuckets
from alerts.detectors.calendar import like_with_like_lags
from alerts.detectors.dispersion import estimate_dispersion as _estimate
from alerts.detectors.release_spike import ReleaseSpikeDetector
from alerts.tracks.base import TrackSetup
from alerts.tracks.instrument import InstrumentDetails
from alerts.tracks.localize import ReleaseLocalizer
from alerts.tracks.release_state import ReleaseTest, SignalTest, release_key
from alerts.tracks.release_watches import Watches
from alerts.tracks.span import MINUTE, ReleaseLink, Span, floor_minute
from storage import MinuteCounts, SeriesKey, latest_signals, unit_counts

__all__ = ["RELEASE_SPIKE", "ReleaseSpikeTrack", "release_key"]

RELEASE_SPIKE = "release_spike"
HOUR = timedelta(hours=1)
_CONCURRENT: tuple[str, ...] = ("concurrent",)

Lagged = dict[tuple[str, str, int], dict[SeriesKey, MinuteCounts]]


class ReleaseSpikeTrack:
    """Tests each release against its baseline (module docstring)."""

    name = RELEASE_SPIKE

    def __init__(self, setup: TrackSetup) -> None:
        self._s = setup.settings.release_spike
        self._setup = setup
        self._releases: dict[str, ReleaseTest] = {}
        self._localizer = ReleaseLocalizer(setup.client)
        self._watches = Watches(setup)
        self._instrument = (
            InstrumentDetails(setup.instrument) if setup.instrument is not None else None
        )

    @property
    def series(self) -> int:
        return sum(max(1, len(r.tests)) for r in self._releases.values())

    def advance(self, span: Span) -> None:
        horizon = timedelta(minutes=self._s.horizon_minutes)
        for model, version in sorted({(m, v) for m, v, _ in span.counts}):
            key = release_key(model, version)
            link = span.links.get((model, version))
            if key in self._releases or link is None or link.previous is None:
                continue
            first = max(floor_minute(link.released_at), span.start)
            test_end = link.released_at + horizon
            if link.superseded_at is not None:
                test_end = min(test_end, link.superseded_at)
            if first >= test_end:
                continue
            self._releases[key] = self._new(link, first, test_end, span)
        # Open detections whose release is not tracked (older than this monitor's history) are
        # followed for their resolution only.
        for row in span.book.open_rows():
            if row.detector != RELEASE_SPIKE or row.key in self._releases:
                continue
            if row.key != release_key(row.model, row.model_version):
                # Opened per signal by an earlier telltale: the release's incident replaces it.
                span.book.resolve(
                    RELEASE_SPIKE, row.key, span.start, "replaced by one incident per release"
                )
                continue
            link = span.links.get((row.model, row.model_version))
            if link is not None:
                self._releases[row.key] = self._new(link, span.start, span.start, span)
        lagged: Lagged = {}
        for key, test in list(self._releases.items()):
            link = span.links.get((test.link.model, test.link.version), test.link)
            test.link = link
            if link.superseded_at is not None:
                test.test_end = min(test.test_end, link.superseded_at)
            self._feed(test, span, lagged)
            if test.next_minute >= test.test_end and span.book.episode(RELEASE_SPIKE, key) is None:
                del self._releases[key]

    # -- set-up ---------------------------------------------------------------------------------

    def _new(
        self, link: ReleaseLink, first: datetime, test_end: datetime, span: Span
    ) -> ReleaseTest:
        assert link.previous is not None
        since = link.released_at - timedelta(days=self._s.history_days)
        history = unit_counts(
            self._setup.client, since, floor_minute(link.released_at), model=link.model,
            model_version=link.previous, repeat_window_minutes=self._setup.repeat_window_minutes,
        )  # fmt: skip
        by_signal = {sig: minutes for (_, _, sig), minutes in history.items()}
        seen = {sig for m, v, sig in span.counts if m == link.model and v == link.version}
        active = {r.name for r in latest_signals(self._setup.client)} - set(span.skipped)
        family = max(1, len(active), len((seen | set(by_signal)) - set(span.skipped)))
        released = floor_minute(link.released_at)
        watches = self._watches.freeze(link, since, released)
        by_signal.update(self._watches.counts(link, watches, link.previous, since, released))
        return ReleaseTest(
            link, first, test_end, last_traffic=first - MINUTE, family=family + len(watches),
            history=by_signal, watches=watches,
        )  # fmt: skip

    def _signal_test(self, test: ReleaseTest, signal: str) -> SignalTest:
        found = test.tests.get(signal)
        if found is None:
            s = self._s
            dispersion = _estimate(
                test.history.get(signal, {}), icc_prior=s.icc_prior,
                day_cv_floor=s.day_cv_floor,
                confidence=s.variance_confidence,
            )  # fmt: skip
            test.family = max(test.family, len(test.tests) + 1)
            day_variance = dispersion.day_variance
            if any(w.name == signal for w in test.watches):  # shares far from 0: log-odds scale
                counts = test.history.get(signal, {}).values()
                n, k = sum(c[0] for c in counts), sum(c[1] for c in counts)
                day_variance = dispersion.log_odds_day_variance(min(0.99, k / max(1, n)))
            detector = ReleaseSpikeDetector(
                alpha=s.alpha / test.family, mixture_tau=s.mixture_tau,
                dispersion=dispersion.phi, day_variance=day_variance,
            )  # fmt: skip
            found = SignalTest(detector, AdaptiveBuckets(s.bucket_min_events), dispersion)
            test.tests[signal] = found
        return found

    # -- baselines ------------------------------------------------------------------------------

    def _lag_for(
        self, test: ReleaseTest, minute: datetime, span: Span, lagged: Lagged
    ) -> int | None:
        """The like-with-like lag for ``minute``'s hour (cached per hour)."""
        hour = minute.replace(minute=0)
        if hour in test.hour_lags:
            return test.hour_lags[hour]
        chosen = None
        for lag in like_with_like_lags(minute, self._s.baseline_lags_minutes, self._s.weekend_days):
            shift = timedelta(minutes=lag)
            series = self._lagged(test, lag, span, lagged)
            if any(
                n > 0
                for counts in series.values()
                for m, (n, _) in counts.items()
                if hour - shift <= m < hour + HOUR - shift
            ):
                chosen = lag
                break
        test.hour_lags[hour] = chosen
        return chosen

    def _lagged(
        self, test: ReleaseTest, lag: int, span: Span, lagged: Lagged
    ) -> dict[SeriesKey, MinuteCounts]:
        model, previous = test.link.model, test.link.previous
        assert previous is not None
        cache_key = (model, previous, lag)
        if cache_key not in lagged:
            shift = timedelta(minutes=lag)
            start = span.start.replace(minute=0)
            until = span.until.replace(minute=0) + HOUR
            lagged[cache_key] = unit_counts(
                self._setup.client, start - shift, until - shift, model=model,
                model_version=previous,
                repeat_window_minutes=self._setup.repeat_window_minutes,
                as_of=span.read_at - shift if span.read_at is not None else None,
                backfill_after_s=self._setup.backfill_after_s,
            )  # fmt: skip
            watched = self._watches.counts(
                test.link, test.watches, previous, start - shift, until - shift,
                as_of=span.read_at - shift if span.read_at is not None else None,
            )  # fmt: skip
            lagged[cache_key].update({(model, previous, w): c for w, c in watched.items()})
        return lagged[cache_key]

    # -- feeding --------------------------------------------------------------------------------

    def _feed(self, test: ReleaseTest, span: Span, lagged: Lagged) -> None:
        link = test.link
        previous = link.previous
        assert previous is not None
        own = {
            sig: minutes
            for (m, v, sig), minutes in span.counts.items()
            if m == link.model and v == link.version
        }
        same = {
            sig: minutes
            for (m, v, sig), minutes in span.counts.items()
            if m == link.model and v == previous
        }
        own.update(self._watches.counts(link, test.watches, link.version, span.start, span.until))
        same.update(self._watches.counts(link, test.watches, previous, span.start, span.until))
        window = timedelta(minutes=self._s.concurrent_window_minutes)
        minute = test.next_minute
        updated = False
        while minute < span.until:
            if any(c.get(minute, (0, 0))[0] > 0 for c in same.values()):
                test.previous_traffic = minute
            n_any = max((c.get(minute, (0, 0))[0] for c in own.values()), default=0)
            if n_any > 0:
                test.last_traffic = minute
            if minute < test.test_end:
                updated |= self._feed_minute(test, minute, own, same, window, span, lagged)
            self._maybe_resolve(test, minute, span)
            minute += MINUTE
        test.next_minute = max(minute, test.next_minute)
        if updated:
            self._refresh(test, span)

    def _feed_minute(
        self,
        test: ReleaseTest,
        minute: datetime,
        own: dict[str, MinuteCounts],
        same: dict[str, MinuteCounts],
        window: timedelta,
        span: Span,
        lagged: Lagged,
    ) -> bool:
        concurrent = test.previous_traffic is not None and minute - test.previous_traffic < window
        if concurrent:
            kind, block, base = "concurrent", _CONCURRENT, same
            base_minute = minute
        else:
            lag = self._lag_for(test, minute, span, lagged)
            if lag is None:
                return False
            series = self._lagged(test, lag, span, lagged)
            kind = f"lag_{lag}m"
            block = (minute.date().isoformat(), kind)  # one day against one baseline day
            base = {sig: c for (_, _, sig), c in series.items()}
            base_minute = minute - timedelta(minutes=lag)
        if any(c.get(minute, (0, 0))[0] > 0 for c in own.values()):
            test.baselines[kind] = test.baselines.get(kind, 0) + 1
        updated = False
        signals = (set(own) | set(test.tests)) - set(span.skipped)
        for signal in sorted(signals):
            n, k = own.get(signal, {}).get(minute, (0, 0))
            m, k_base = base.get(signal, {}).get(base_minute, (0, 0))
            if n == 0 and m == 0:
                continue
            sig_test = self._signal_test(test, signal)
            for bucket in sig_test.buckets.add(n, k, m, k_base, block=block):
                sig_test.detector.update(
                    bucket.n_new, bucket.k_new, bucket.n_base, bucket.k_base,
                    block=None if bucket.block == _CONCURRENT else bucket.block,
                    dispersion=bucket.dispersion(sig_test.dispersion),
                )  # fmt: skip
                updated = True
                detection = sig_test.detector.detection(test.key, minute + MINUTE)
                if detection is not None:
                    sig_test.fired_at = minute + MINUTE
                    self._alarm(test, signal, detection, span)
        return updated

    def _alarm(self, test: ReleaseTest, signal: str, detection: Detection, span: Span) -> None:
        outcome = span.book.alarm(
            detection, model=test.link.model, model_version=test.link.version,
            signal=signal, details=self._details(test),
        )  # fmt: skip
        if outcome == "opened":
            span.report.opened.append(f"{RELEASE_SPIKE} {test.key} at {detection.opened_at}")

    def _fired(self, test: ReleaseTest) -> list[str]:
        fired = [(t.fired_at, sig) for sig, t in test.tests.items() if t.fired_at is not None]
        return [sig for _, sig in sorted(fired)]

    def _refresh(self, test: ReleaseTest, span: Span) -> None:
        """Bring an open detection's figures (and its list of signals) up to date."""
        episode = span.book.episode(RELEASE_SPIKE, test.key)
        fired = self._fired(test)
        if episode is None or not fired:
            return
        first = episode.row.signal.split(",")[0] if episode.row.signal else fired[0]
        lead = test.tests.get(first) or test.tests[fired[0]]
        s = lead.detector.state
        if not s.fired:
            return
        signals = [first, *(sig for sig in fired if sig != first)]
        span.book.refresh(
            Detection(
                detector=RELEASE_SPIKE, key=test.key, opened_at=span.until, statistic=s.e_value,
                threshold=1.0 / lead.detector.alpha, p_value=s.p_value, e_value=s.e_value,
                effect=s.effect, effect_low=s.cs_low, effect_high=s.cs_high,
                details={"minutes": s.minutes, "n_new": s.n_new, "k_new": s.k_new,
                         "n_base": s.n_base, "k_base": s.k_base, "odds_ratio": s.odds_ratio},
            ),
            self._details(test),
            signal=",".join(signals),
        )  # fmt: skip

    def _details(self, test: ReleaseTest) -> dict[str, Any]:
        signals = []
        fired = self._fired(test)
        watches = {w.name: w for w in test.watches}
        for sig in fired:
            t = test.tests[sig]
            s = t.detector.state
            counts = (s.n_new, s.k_new, s.n_base, s.k_base)
            signals.append({
                "signal": sig, "fired_at": t.fired_at.isoformat() if t.fired_at else None,
                "e_value": s.e_value, "threshold": 1.0 / t.detector.alpha, "effect": s.effect,
                "effect_low": s.cs_low, "effect_high": s.cs_high, "n_new": s.n_new,
                "k_new": s.k_new, "n_base": s.n_base, "k_base": s.k_base,
                "dispersion": t.dispersion.as_dict(),
                **({"watch": watches[sig].as_dict()} if sig in watches
                   else self._localize(test, sig) | self._instrument_details(test, sig, counts)),
            })  # fmt: skip
        # Where the first failure signal to regress concentrates (alerts.tracks.localize): the
        # notifier's message and Grafana's ``top_slice`` read this one (watches have none).
        first = next((sig for sig in fired if sig not in watches), None)
        return {
            "released_at": test.link.released_at.isoformat(),
            "release_source": test.link.source,
            "baseline_version": test.link.previous,
            "baseline_minutes": dict(test.baselines),
            "family_size": test.family,
            "alpha_per_signal": self._s.alpha / test.family,
            "signals": signals,
            **(self._localize(test, first) if first else {}),
        }

    def _localize(self, test: ReleaseTest, signal: str) -> dict[str, Any]:
        """The slices a fired signal's excess failures concentrate in, computed once."""
        sig_test = test.tests[signal]
        if sig_test.fired_at is None:
            return {}
        return self._localizer.details(
            f"{test.key}/{signal}", fired=True, model=test.link.model,
            version=test.link.version, baseline_version=test.link.previous, signal=signal,
            released_at=test.link.released_at, at=sig_test.fired_at,
        )  # fmt: skip

    def _instrument_details(
        self, test: ReleaseTest, signal: str, counts: tuple[int, int, int, int]
    ) -> dict[str, Any]:
        """Corrected levels before and after, once the signal fired (alerts.tracks.instrument)."""
        if self._instrument is None or test.tests[signal].fired_at is None:
            return {}
        return self._instrument.details(
            f"{test.key}/{signal}", signal=signal, version=test.link.version,
            baseline_version=test.link.previous, counts=counts,
        )  # fmt: skip

    def _maybe_resolve(self, test: ReleaseTest, minute: datetime, span: Span) -> None:
        episode = span.book.episode(RELEASE_SPIKE, test.key)
        if episode is None:
            return
        end_of_minute = minute + MINUTE
        superseded = test.link.superseded_at
        if superseded is not None and end_of_minute >= superseded:
            at, reason = superseded, "superseded by a newer release"
        elif end_of_minute - (test.last_traffic + MINUTE) >= self._setup.resolve_after:
            at = test.last_traffic + MINUTE + self._setup.resolve_after
            reason = "no traffic from the version"
        else:
            return
        self._refresh(test, span)  # the final figures go into the resolve row
        row = span.book.resolve(RELEASE_SPIKE, test.key, at, reason)
        if row is not None:
            span.report.resolved.append(f"{RELEASE_SPIKE} {test.key} at {row.resolved_at}")
