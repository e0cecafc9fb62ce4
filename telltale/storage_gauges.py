"""The ``/metrics`` gauges read from storage, refreshed periodically (never per event).

* ``telltale_corrected_rate{signal, model, model_version}``: the failure rate over the last
  ``metrics_rate_window_s`` with the signal's audited errors taken out (``telltale rates
  --corrected``, :mod:`telltale.trust`), for audited signals only;
* ``telltale_open_incidents{detector}``: open detections per detector (the ``detections`` table
  the monitor writes), 0 for a detector whose detections are all resolved.

Versions past the cap of :class:`streams.VersionCap` (the worker's and the API's counters
share it) get no corrected-rate series: a rate of ``other`` would mix versions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from storage import effective_events, failure_rates, open_detection_counts
from streams import VersionCap
from telltale.signal_store import ClickHouseSignalStore
from telltale.trust import load_errors_for

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from telltale.settings import AuditSettings

__all__ = ["StorageGauges"]


class StorageGauges:
    """The gauges above, in ``registry``; :meth:`refresh` replaces their values."""

    def __init__(
        self,
        registry: CollectorRegistry,
        cap: VersionCap,
        audit: AuditSettings,
        window_s: float,
    ) -> None:
        from prometheus_client import Gauge

        self._cap = cap
        self._audit = audit
        self._window = timedelta(seconds=window_s)
        self.corrected_rate = Gauge("telltale_corrected_rate", "failure rate over the recent "
                                    "window corrected for the signal's audited errors",
                                    ["signal", "model", "model_version"],
                                    registry=registry)  # fmt: skip
        self.open_incidents = Gauge("telltale_open_incidents", "open detections per detector",
                                    ["detector"], registry=registry)  # fmt: skip

    def refresh(self, client: Any, now: datetime | None = None) -> None:
        """Read both gauges from storage (a few queries; run it every minute or so)."""
        incidents = open_detection_counts(client)
        corrected = self._corrected(client, now or datetime.now(UTC))
        self.open_incidents.clear()
        for detector, n in incidents.items():
            self.open_incidents.labels(detector).set(n)
        self.corrected_rate.clear()
        for key, rate in corrected.items():
            self.corrected_rate.labels(*key).set(rate)

    def _corrected(self, client: Any, now: datetime) -> dict[tuple[str, str, str], float]:
        """As ``telltale rates --corrected --since <now - window>`` computes them (each row
        worth its effective events: retries of one answer share one flag)."""
        since = now - self._window
        rows = failure_rates(client, since=since)
        audit = self._audit
        errors = load_errors_for(client, {r.signal for r in rows},
                                 min_version_labels=audit.min_version_labels,
                                 include_judge=audit.use_judge_labels)  # fmt: skip
        fields_of = {s.name: s.field for s in ClickHouseSignalStore(client).latest()}
        worth: dict[Any, float] = {}
        for name, found in errors.items():
            if found is not None and name in fields_of:
                worth |= effective_events(client, name, fields_of[name], since=since)
        rates: dict[tuple[str, str, str], float] = {}
        for row in rows:
            found = errors.get(row.signal)
            version = self._cap.label(row.model, row.model_version)
            if found is None or version != row.model_version:
                continue
            effective = worth.get((row.signal, row.model, row.model_version, ()))
            fields = found.correct(row.model_version, row.events, row.failures,
                                   effective_events=effective)  # fmt: skip
            if fields["corrected_rate"] is not None:
                rates[(row.signal, row.model, version)] = float(fields["corrected_rate"])
        return rates
