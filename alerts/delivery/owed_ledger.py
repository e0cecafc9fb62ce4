"""The fan-out's owed messages written down in ClickHouse (:mod:`storage.owed`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from alerts.delivery.incident import Action
from storage import DetectionRow, OwedNotification, detections_by_id, list_owed, record_owed
from storage import settle_owed as settle_owed_row

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouseOwedLedger"]


class ClickHouseOwedLedger:
    """An :class:`~alerts.delivery.fanout.OwedLedger` over one database."""

    def __init__(
        self, client: Client, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._client = client
        self._clock = clock

    def owe(self, notifier: str, action: Action, detection: DetectionRow) -> None:
        record_owed(self._client, self._row(notifier, action, detection))

    def settle(self, notifier: str, action: Action, detection: DetectionRow) -> None:
        settle_owed_row(self._client, self._row(notifier, action, detection))

    def owed(self) -> list[tuple[str, Action, DetectionRow]]:
        """What is owed, oldest first; a message whose detection is gone is settled."""
        owed = list_owed(self._client)
        rows = detections_by_id(self._client, sorted({o.detection_id for o in owed}))
        found: list[tuple[str, Action, DetectionRow]] = []
        for o in owed:
            action: Action = "resolve" if o.action == "resolve" else "trigger"
            row = rows.get(o.detection_id)
            if row is None:  # erased or expired: nothing left to send
                settle_owed_row(self._client, o)
                continue
            found.append((o.notifier, action, row))
        return found

    def _row(self, notifier: str, action: Action, detection: DetectionRow) -> OwedNotification:
        return OwedNotification(notifier, action, detection.detection_id, self._clock())
