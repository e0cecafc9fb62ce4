"""The prompt-drift track: per model, one look every ``every_minutes`` (aligned to the epoch).

Each look tests the recent ``recent_minutes`` of prompt embeddings against the
``reference_minutes`` just before them with :class:`~alerts.drift.PromptDriftDetector` (wrapped
through its public interface), both deterministic samples. Every look is stored in
``drift_windows`` (p-value, per-look level, cluster shares with example prompts). A detection
clears at the first look that does not fire, or when no look could be made for ``resolve_after``
since its last alarm (the model stopped sending prompts).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from alerts.base import Detection
from alerts.drift import PromptDriftDetector, explain_drift
from alerts.settings import DriftSettings
from alerts.tracks.span import Span
from storage.detections import DriftWindowRow
from storage.embeddings import event_contents
from storage.series import prompt_models, prompt_sample

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


__all__ = ["DRIFT", "DriftTrack"]

DRIFT = "prompt_drift"


class DriftTrack:
    """Looks for prompt drift on the epoch-aligned grid of windows (module docstring)."""

    name = DRIFT

    def __init__(
        self, settings: DriftSettings, resume_points: dict[str, datetime],
        catchup_looks: int | None,
    ) -> None:  # fmt: skip
        self._s = settings
        self._drift_done = dict(resume_points)
        self._catchup = catchup_looks

    @property
    def series(self) -> int:
        return len(self._drift_done)

    def advance(self, span: Span) -> None:
        s, start, until, report = self._s, span.start, span.until, span.report
        client, book = span.client, span.book
        every = timedelta(minutes=s.every_minutes)
        recent = timedelta(minutes=s.recent_minutes)
        reference = timedelta(minutes=s.reference_minutes)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        if epoch + ((start - epoch) // every + 1) * every > until:
            return  # no window ends in (start, until]: most cycles of a per-minute monitor
        models = set(prompt_models(client, start - recent - reference, until, s.field))
        models |= {row.model for row in book.open_rows() if row.detector == DRIFT}
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
            looks: list[tuple[DriftWindowRow | None, Detection | None, datetime]] = []
            for end in ends:
                look = self._drift_look(client, model, end, recent, reference)
                looks.append((*look, end) if look is not None else (None, None, end))
                self._drift_done[model] = end
            windows = [window for window, _, _ in looks if window is not None]
            span.store.save_drift_windows(windows)
            report.drift_looks += len(windows)
            key = f"model={model}"
            for window, detection, end in looks:
                if detection is not None:
                    if book.alarm(detection, model=model) == "opened":
                        report.opened.append(f"{DRIFT} {key} at {detection.opened_at}")
                    continue
                episode = book.episode(DRIFT, key)
                if window is not None:
                    reason = "a look did not fire"
                elif episode is not None and end - episode.last_alarm >= span.resolve_after:
                    reason = "too few prompts to test since the last alarm"
                else:
                    continue
                row = book.resolve(DRIFT, key, end, reason)
                if row is not None:
                    report.resolved.append(f"{DRIFT} {key} at {row.resolved_at}")

    def _drift_look(
        self, client: Client, model: str, end: datetime, recent: timedelta, reference: timedelta
    ) -> tuple[DriftWindowRow, Detection | None] | None:
        """One look: the stored window and, if it fired, its detection; ``None`` if too few
        prompts were sent in either window to test."""
        s = self._s
        new = prompt_sample(client, model, end - recent, end, field=s.field, limit=s.recent_sample)
        if len(new.event_ids) < s.min_prompts:
            return None
        old = prompt_sample(
            client, model, end - recent - reference, end - recent,
            field=s.field, limit=s.reference_sample, embedder_id=new.embedder_id,
        )  # fmt: skip
        if len(old.event_ids) < s.min_prompts:
            return None
        x = np.asarray(old.vectors, dtype=np.float64)
        y = np.asarray(new.vectors, dtype=np.float64)
        seed = int.from_bytes(
            hashlib.sha256(f"{s.seed}|{model}|{end.isoformat()}".encode()).digest()[:4], "big"
        )
        detector = PromptDriftDetector(
            alpha=s.alpha, horizon_looks=s.horizon_looks,
            n_permutations=s.permutations, seed=seed, explain_clusters=0,
        )  # fmt: skip
        state = detector.update(x, y)
        clusters = self._explain(client, x, y, old.event_ids, new.event_ids, seed)
        window = DriftWindowRow(
            model=model, window_start=end - recent, window_end=end, statistic=state.p_value,
            threshold=state.level, p_value=state.p_value, reference_size=len(x),
            recent_size=len(y), clusters=clusters,
        )  # fmt: skip
        if not state.fired:
            return window, None
        top = clusters[0] if clusters else None
        detection = Detection(
            detector=DRIFT, key=f"model={model}", opened_at=end, statistic=state.p_value,
            threshold=state.level, p_value=state.p_value,
            effect=float(top["change"]) if top else None,
            details={
                "mmd2": state.mmd2, "bandwidth": state.bandwidth,
                "window_start": (end - recent).isoformat(), "window_end": end.isoformat(),
                "reference_start": (end - recent - reference).isoformat(),
                "n_reference": state.n_reference, "n_recent": state.n_recent,
                "embedder_id": new.embedder_id, "clusters": clusters[:3],
            },
        )  # fmt: skip
        return window, detection

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
                "reference_examples": [texts.get(old_ids[i], "") for i in c.reference_examples],
                "recent_examples": [texts.get(new_ids[i], "") for i in c.recent_examples],
            }
            for c in shifts
        ]
