"""The prompt-drift track: per model, one look every ``every_minutes`` (aligned to the epoch).

The recent window reaches back to the end of the last tested one (at least ``recent_minutes``,
at most ``longest_window_minutes``), so at low traffic prompts wait for the next look and a
window holds a count of prompts (tested at the level of the looks it replaces). The reference is
the same clock hours on the previous ``reference_days`` days (before an open incident began);
repeats of one prompt by one unit count once and units are permuted as wholes. Every look is
stored in ``drift_windows``; an incident opens on a look that fires and resolves after
``clean_looks`` clean looks, or when no look could be made for ``resolve_after``. An incident
open in the book when the track starts is resumed, with its stored looks replayed through its
hysteresis; a look is stored only after the detections it changed
(:meth:`~alerts.tracks.book.DetectionBook.record_drift_windows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from alerts.detectors.base import Detection
from alerts.detectors.explain import collapse_repeats, explain_drift
from alerts.detectors.prompt_drift import (
    DriftHysteresis,
    PromptDriftDetector,
    count_window_start,
    look_level,
    seasonal_reference_spans,
)
from alerts.tracks.base import TrackSetup
from alerts.tracks.report import EngineReport
from alerts.tracks.span import Span
from storage import DriftWindowRow, UnitSample, event_contents, prompt_models, prompt_unit_sample

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from alerts.tracks.book import DetectionBook


__all__ = ["PROMPT_DRIFT", "PromptDriftTrack"]

PROMPT_DRIFT = "prompt_drift"

_Look = tuple[DriftWindowRow, Detection | None, bool] | Literal["waiting", "untestable"]


class PromptDriftTrack:
    """Looks for prompt drift on the epoch-aligned grid of windows (module docstring)."""

    name = PROMPT_DRIFT

    def __init__(self, setup: TrackSetup) -> None:
        self._s = setup.settings.prompt_drift
        self._client = setup.client
        self._store = setup.store
        self._resolve_after = setup.resolve_after
        resume_points = setup.store.drift_resume_points()
        self._drift_done = dict(resume_points)
        self._drift_pending = dict(resume_points)  # model -> start of the next window
        self._drift_incidents: dict[str, DriftHysteresis] = {}
        self._drift_since: dict[str, datetime] = {}  # model -> first window of an open incident
        self._catchup = setup.drift_catchup_looks

    @property
    def series(self) -> int:
        return len(self._drift_done)

    def advance(self, span: Span) -> None:
        s, start, until, report = self._s, span.start, span.until, span.report
        client, book = self._client, span.book
        report.count(self.name, "looks", 0)
        every = timedelta(minutes=s.every_minutes)
        recent = timedelta(minutes=s.recent_minutes)
        reference = timedelta(minutes=s.reference_minutes)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        if epoch + ((start - epoch) // every + 1) * every > until:
            return  # no window ends in (start, until]: most cycles of a per-minute monitor
        models = set(prompt_models(client, start - recent - reference, until, s.field))
        models |= {row.model for row in book.open_rows() if row.detector == PROMPT_DRIFT}
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
            incident = self._drift_incident(span, model, key)
            windows: list[DriftWindowRow] = []
            for end in ends:
                look = self._drift_look(client, model, end, recent, reference, incident)
                self._drift_done[model] = end
                episode = book.episode(PROMPT_DRIFT, key)
                if look == "waiting":  # prompts are arriving, slowly: the window grows
                    continue
                if look == "untestable":
                    if episode is not None and end - episode.last_alarm >= self._resolve_after:
                        reason = "too few prompts to test since the last alarm"
                        self._close_drift(book, model, key, end, report, reason)
                        incident = self._drift_incident(span, model, key)  # a closed one
                    continue
                window, detection, fired = look
                windows.append(window)
                outcome = incident.update(fired, window.p_value)
                if detection is not None:
                    if outcome == "opened":
                        self._drift_since[model] = window.window_start
                    if book.alarm(detection, model=model) == "opened":
                        report.opened.append(f"{PROMPT_DRIFT} {key} at {detection.opened_at}")
                elif outcome == "resolved" or (episode is not None and not incident.is_open):
                    reason = (f"{s.clean_looks} consecutive looks with a p-value above "
                              f"{s.clean_level}")  # fmt: skip
                    self._close_drift(book, model, key, end, report, reason)
            book.record_drift_windows(windows)  # stored after the detections (docstring)
            report.count(self.name, "looks", len(windows))

    def _drift_incident(self, span: Span, model: str, key: str) -> DriftHysteresis:
        """The model's incident state. An incident still open in the book (a restarted monitor)
        is resumed open, compared with the days before its first window, with the stored looks
        since it opened replayed through its hysteresis (module docstring)."""
        incident = self._drift_incidents.get(model)
        if incident is not None:
            return incident
        s, book = self._s, span.book
        episode = book.episode(PROMPT_DRIFT, key)
        incident = DriftHysteresis(s.clean_level, s.clean_looks, is_open=episode is not None)
        self._drift_incidents[model] = incident
        if episode is None:
            return incident
        began = episode.row.details.get("window_start")
        self._drift_since[model] = (
            datetime.fromisoformat(began) if isinstance(began, str) else episode.row.opened_at
        )
        for look in self._store.drift_windows_after(model, episode.row.opened_at):
            if incident.update(look.p_value <= look.threshold, look.p_value) == "resolved":
                # Stored by a telltale that wrote looks before detections: the resolution the
                # look made was lost, and is recorded now, at that look.
                reason = f"{s.clean_looks} consecutive looks with a p-value above {s.clean_level}"
                self._close_drift(book, model, key, look.window_end, span.report, reason)
                return self._drift_incident(span, model, key)  # a closed one
        return incident

    def _close_drift(
        self,
        book: DetectionBook,
        model: str,
        key: str,
        at: datetime,
        report: EngineReport,
        reason: str,
    ) -> None:
        self._drift_incidents.pop(model, None)
        self._drift_since.pop(model, None)
        row = book.resolve(PROMPT_DRIFT, key, at, reason)
        if row is not None:
            report.resolved.append(f"{PROMPT_DRIFT} {key} at {row.resolved_at}")

    def _drift_look(
        self,
        client: Client,
        model: str,
        end: datetime,
        recent: timedelta,
        reference: timedelta,
        incident: DriftHysteresis,
    ) -> _Look:
        """One look: the stored window, its detection if it fired, and whether it fired.

        Without a test: ``"waiting"`` when the recent window holds some prompts, too few yet,
        and can still grow (they wait for the next look), ``"untestable"`` when it is empty or
        as long as allowed, or when the reference holds too few prompts."""
        s = self._s
        longest = timedelta(minutes=s.longest_window_minutes)
        start = count_window_start(end, self._drift_pending.get(model), recent, longest)
        new = prompt_unit_sample(client, model, [(start, end)], field=s.field,
                                 limit=s.recent_sample)  # fmt: skip
        if len(new.event_ids) < s.min_prompts:
            if new.event_ids and end - start < longest:  # they wait for the next look
                self._drift_pending[model] = start
                return "waiting"
            return "untestable"
        since = self._drift_since.get(model) if incident.is_open else None
        spans = seasonal_reference_spans(start, end, s.reference_days, before=since)
        old = self._reference(client, model, spans, new.embedder_id)
        reference_kind = "seasonal"
        if len(old.event_ids) < s.min_prompts and s.reference_minutes > 0:
            reference_kind = "previous"
            spans = [(start - reference, start)]
            old = self._reference(client, model, spans, new.embedder_id)
        if len(old.event_ids) < s.min_prompts:
            self._drift_pending[model] = end  # nothing to compare with: start afresh
            return "untestable"
        self._drift_pending[model] = end
        old, new = _once_per_unit(old), _once_per_unit(new)
        x = np.asarray(old.vectors, dtype=np.float64)
        y = np.asarray(new.vectors, dtype=np.float64)
        seed = int.from_bytes(
            hashlib.sha256(f"{s.seed}|{model}|{end.isoformat()}".encode()).digest()[:4], "big"
        )
        every = timedelta(minutes=s.every_minutes)
        detector = PromptDriftDetector(
            alpha=s.alpha, horizon_looks=s.horizon_looks,
            n_permutations=s.permutations, seed=seed, explain_clusters=0,
            level=look_level(s.alpha, s.horizon_looks, end - start, every),
        )  # fmt: skip
        state = detector.update(x, y, old.units, new.units)
        clusters = self._explain(client, x, y, old.event_ids, new.event_ids, seed)
        window = DriftWindowRow(
            model=model, window_start=start, window_end=end, statistic=state.p_value,
            threshold=state.level, p_value=state.p_value, reference_size=len(x),
            recent_size=len(y), clusters=clusters,
        )  # fmt: skip
        if not state.fired:
            return window, None, False
        top = clusters[0] if clusters else None
        detection = Detection(
            detector=PROMPT_DRIFT, key=f"model={model}", opened_at=end, statistic=state.p_value,
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
        self, client: Client, model: str, spans: list[tuple[datetime, datetime]],
        embedder_id: str,
    ) -> UnitSample:  # fmt: skip
        s = self._s
        return prompt_unit_sample(
            client, model, spans, field=s.field, limit=s.reference_sample,
            embedder_id=embedder_id,
        )  # fmt: skip

    def _explain(
        self,
        client: Client,
        x: np.ndarray[Any, np.dtype[np.float64]],
        y: np.ndarray[Any, np.dtype[np.float64]],
        old_ids: list[str],
        new_ids: list[str],
        seed: int,
    ) -> list[dict[str, Any]]:
        """Cluster shares of both windows, largest growth first, with example prompt texts."""
        if self._s.clusters == 0:
            return []
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        # k-means' OpenMP threads spin against each other on a busy host (seconds instead of
        # tens of milliseconds); one thread is steady, and the monitor is a background job.
        with threadpool_limits(limits=1, user_api="openmp"):
            k = min(self._s.clusters, len(x) + len(y))
            shifts = explain_drift(x, y, k, seed=seed)
        wanted = {old_ids[i] for c in shifts for i in c.reference_examples}
        wanted |= {new_ids[i] for c in shifts for i in c.recent_examples}
        texts = event_contents(client, sorted(wanted), self._s.field)
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
