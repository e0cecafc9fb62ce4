"""Prompt-drift incidents across monitor restarts, over real chDB: a new monitor object on the
same database neither re-pages an incident that is still open nor forgets the clean looks it had
counted; a monitor that dies between testing looks and recording their detections loses no
alarm; looks lost after their detections were written are tested again without a second incident.

The traffic is the intermittent shift of ``test_drift_monitor``: on Tuesday the hourly looks fire
at 11:00, 13:00 and 15:00 and are clean from 16:00, so one uninterrupted monitor opens one
incident at 11:00 and resolves it at 18:00, after the clean looks of 16, 17 and 18 h.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from alerts_seed import webhook_server
from pydantic import SecretStr
from test_prompt_drift_monitor import BASE, DAY0, H, _topics, _windows, _write

from alerts.delivery.monitor import Monitor
from alerts.delivery.notify import WebhookNotifier
from alerts.settings import MonitorConfig, NotifyConfig
from alerts.tracks import ClickHouseStore, DetectionBook
from alerts.tracks.engine import DetectionEngine
from storage import DetectionRow, DriftWindowRow, StorageUnavailable, list_detections

TUESDAY = DAY0 + 24 * H
STRONG = {10, 12, 14}  # Tuesday: these hours send 45 % of prompts about a new topic
SETTINGS: dict[str, Any] = {
    "settle_s": 0, "resolve_after_minutes": 180, "prompt_drift_recent_sample": 300,
    "prompt_drift_reference_sample": 400, "prompt_drift_clusters": 4, "lookback_minutes": 13 * 60,
    "prompt_drift_clean_level": 0.01,
}  # fmt: skip


def _mix(at: datetime) -> list[float]:
    return [0.25, 0.2, 0.1, 0.45] if at.day == 3 and at.hour in STRONG else BASE


def _traffic(client: Any) -> None:
    topics = _topics(0)
    for day in (0, 1):
        _write(client, model="chat", start=DAY0 + day * 24 * H + 8 * H, minutes=12 * 60,
               every_s=20, topics=topics, mix=_mix, seed=10 + day)  # fmt: skip


def _monitor(client: Any, url: str | None = None) -> Monitor:
    settings = MonitorConfig.model_validate(SETTINGS)
    if url is None:
        return Monitor(client, settings)
    notify = NotifyConfig(webhook_url=SecretStr(url), backoff_s=0.01, backoff_max_s=0.02)
    return Monitor(client, settings, WebhookNotifier(notify), notify)


def test_restarts_mid_incident_page_once_and_keep_the_clean_streak(ch: Any) -> None:
    _traffic(ch)
    with webhook_server() as hook:
        url = hook.url("/alerts")
        # Each run is a new process: a new monitor object over the same database.
        first = _monitor(ch, url).run_once(now=TUESDAY + 14 * H)
        assert first.engine.opened == [f"prompt_drift model=chat at {TUESDAY + 11 * H}"]
        assert first.notifications_sent == 1

        # Restarted while the shift goes on: the alarm at 15:00 continues the open incident.
        second = _monitor(ch, url).run_once(now=TUESDAY + 17 * H)
        assert second.engine.opened == [] and second.engine.resolved == []
        assert second.notifications_sent == 0 and second.open_detections == 1
        (row,) = list_detections(ch, state="open")
        assert row.details["alarms_in_episode"] == 3

        # Restarted after two clean looks (16 and 17 h): one more clean look resolves it.
        third = _monitor(ch, url).run_once(now=TUESDAY + 20 * H)
        assert third.engine.opened == []
        assert third.engine.resolved == [f"prompt_drift model=chat at {TUESDAY + 18 * H}"]

    windows = _windows(ch, "chat")
    assert [w[1] for w in windows] == [TUESDAY + h * H for h in range(9, 21)]
    assert [w[1] for w in windows if w[2] <= w[3]] == [TUESDAY + h * H for h in (11, 13, 15)]
    (row,) = list_detections(ch)
    assert (row.state, row.opened_at) == ("resolved", TUESDAY + 11 * H)
    # Not 20:00, which a hysteresis that forgot its streak at the restart would give.
    assert row.resolved_at == TUESDAY + 18 * H
    assert [r["event"] for r in hook.requests] == ["firing", "resolved"]
    assert {r["detection_id"] for r in hook.requests} == {row.detection_id}
    assert row.notified == "resolved"


def test_a_monitor_that_dies_before_recording_its_looks_loses_no_alarm(ch: Any) -> None:
    _traffic(ch)
    settings = MonitorConfig.model_validate(SETTINGS)
    store = ClickHouseStore(ch)
    book = DetectionBook(store)
    engine = DetectionEngine(ch, settings, book, store, start=TUESDAY + 8 * H)
    report = engine.advance(TUESDAY + 12 * H, [])
    assert report.opened == [f"prompt_drift model=chat at {TUESDAY + 11 * H}"]
    # The process dies here, before the book is flushed: nothing of the cycle may be stored,
    # the looks included (a stored look is never tested again).
    assert _windows(ch, "chat") == []
    assert list_detections(ch) == []

    _monitor(ch).run_once(now=TUESDAY + 20 * H)

    (row,) = list_detections(ch)
    assert (row.state, row.opened_at, row.resolved_at) == (
        "resolved", TUESDAY + 11 * H, TUESDAY + 18 * H,
    )  # fmt: skip
    assert len(_windows(ch, "chat")) == 12


class _WindowsUnwritable(ClickHouseStore):
    """chDB for detections; the drift looks' insert fails (the database went away between the
    two inserts of a flush)."""

    def save_drift_windows(self, rows: Sequence[DriftWindowRow]) -> None:
        raise StorageUnavailable("drift_windows insert failed")


def test_looks_lost_after_their_detection_was_written_are_tested_again(ch: Any) -> None:
    _traffic(ch)
    settings = MonitorConfig.model_validate(SETTINGS)
    store = _WindowsUnwritable(ch)
    book = DetectionBook(store)
    DetectionEngine(ch, settings, book, store, start=TUESDAY + 8 * H).advance(TUESDAY + 12 * H, [])
    with pytest.raises(StorageUnavailable):
        book.flush()
    (row,) = list_detections(ch)
    assert (row.state, row.opened_at) == ("firing", TUESDAY + 11 * H)
    assert _windows(ch, "chat") == []

    # The next monitor tests the looks again (the same seeded verdicts): the alarm at 11:00
    # continues the stored incident instead of opening another, and it resolves as usual.
    report = _monitor(ch).run_once(now=TUESDAY + 20 * H)
    assert report.engine.opened == []
    (row,) = list_detections(ch)
    assert (row.state, row.opened_at, row.resolved_at) == (
        "resolved", TUESDAY + 11 * H, TUESDAY + 18 * H,
    )  # fmt: skip
    assert row.details["alarms_in_episode"] == 3  # 11, 13 and 15 h, the first counted once
    assert len(_windows(ch, "chat")) == 12


class _DetectionsLost(ClickHouseStore):
    """chDB for the drift looks; the detections' insert is lost (what a telltale that stored
    looks before detections left behind when it died between the two)."""

    def save(self, rows: Sequence[DetectionRow]) -> None:
        pass


def test_a_resolution_stored_only_as_looks_is_recorded_at_its_look(ch: Any) -> None:
    _traffic(ch)
    _monitor(ch).run_once(now=TUESDAY + 17 * H)  # open since 11:00, clean at 16 and 17 h
    settings = MonitorConfig.model_validate(SETTINGS)
    store = _DetectionsLost(ch)
    book = DetectionBook(store)
    engine = DetectionEngine(ch, settings, book, store, start=TUESDAY + 17 * H)
    assert engine.advance(TUESDAY + 18 * H, []).resolved  # the third clean look ...
    book.flush()
    (row,) = list_detections(ch)
    assert row.state == "firing"  # ... whose resolution never reached the table

    report = _monitor(ch).run_once(now=TUESDAY + 20 * H)
    assert report.engine.resolved == [f"prompt_drift model=chat at {TUESDAY + 18 * H}"]
    assert report.engine.opened == []
    (row,) = list_detections(ch)
    assert (row.state, row.resolved_at) == ("resolved", TUESDAY + 18 * H)
    assert len(_windows(ch, "chat")) == 12
