"""Messages a notifier still owes (migration 19), so a restarted monitor still sends them.

When PagerDuty, Slack and the webhook are all configured and one of them fails while another
delivers, the detection counts as notified and the failed notifier *owes* the message
(:mod:`alerts.delivery.fanout`). Each owed message is a row here; it is settled (a newer row
with ``settled = 1``) once delivered, rejected for good, or dropped beyond the owed limit.
Rows name the detection, not its content: a restarted monitor reads the detection itself.
Settled rows expire after 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from storage._time import as_utc, require_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["OWED_NOTIFICATIONS", "OwedNotification", "list_owed", "record_owed", "settle_owed"]

OWED_NOTIFICATIONS = """
CREATE TABLE IF NOT EXISTS owed_notifications (
    notifier      LowCardinality(String),
    action        LowCardinality(String),
    detection_id  String,
    owed_at       DateTime64(3, 'UTC'),
    settled       UInt8,
    updated_at    DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (notifier, detection_id, action)
TTL toDateTime(updated_at) + INTERVAL 30 DAY WHERE settled = 1
"""

_COLUMNS = ("notifier", "action", "detection_id", "owed_at", "settled", "updated_at")


@dataclass(frozen=True)
class OwedNotification:
    notifier: str
    action: str
    detection_id: str
    owed_at: datetime


def record_owed(client: Client, owed: OwedNotification) -> None:
    """Write that ``owed.notifier`` owes ``owed.action`` of the detection."""
    _insert(client, owed, settled=False)


def settle_owed(client: Client, owed: OwedNotification) -> None:
    """Write that the message is no longer owed (delivered, rejected or dropped)."""
    _insert(client, owed, settled=True)


def list_owed(client: Client) -> list[OwedNotification]:
    """Every message still owed, oldest first."""
    rows = client.query(
        "SELECT notifier, action, detection_id, owed_at FROM owed_notifications FINAL "
        "WHERE settled = 0 ORDER BY owed_at, notifier, detection_id"
    ).result_rows
    return [OwedNotification(str(n), str(a), str(d), as_utc(t)) for n, a, d, t in rows]


def _insert(client: Client, owed: OwedNotification, *, settled: bool) -> None:
    row = [owed.notifier, owed.action, owed.detection_id, require_utc(owed.owed_at),
           int(settled), datetime.now(UTC)]  # fmt: skip
    client.insert("owed_notifications", [row], column_names=list(_COLUMNS))
