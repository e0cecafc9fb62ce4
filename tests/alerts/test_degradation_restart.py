"""The slow-degradation CUSUM across monitor restarts, over real chDB: a monitor restarted
mid-incident with a lookback shorter than the series' history (its CUSUM and profile are rebuilt
from less history than the first monitor had) continues the open incident, opens nothing new and
resolves it once; a lookback shorter than the CUSUM's warm-up does not make it resolve a
persisting degradation early."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts_seed import traffic
from test_monitor import MIN, _daily_cycle_rate, _monitor

from storage import list_detections

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
STEP_HOUR = 24 + 14  # Tuesday 14:00-15:00: the rate is 9 points above the cycle


def _history(client: Any) -> None:
    for hour in range(48):
        rate = _daily_cycle_rate(hour % 24) + (0.09 if hour == STEP_HOUR else 0.0)
        traffic(client, model="img", version="v3", start=DAY0 + hour * 60 * MIN, minutes=60,
                per_minute=15, rate=rate, seed=500 + hour)  # fmt: skip


def test_a_restart_mid_degradation_continues_the_incident(ch: Any) -> None:
    _history(ch)
    step = DAY0 + STEP_HOUR * 60 * MIN
    settings: dict[str, Any] = {"degradation_arl0_minutes": 10_000, "resolve_after_minutes": 45}
    first = _monitor(ch, lookback_minutes=3_000, **settings).run_once(now=step + 45 * MIN)
    assert len(first.engine.opened) == 1
    (opened,) = list_detections(ch)
    assert opened.state == "firing"

    for lookback in (1_500, 3_000):  # a replay shorter than the first monitor's history, and not
        restarted = _monitor(ch, lookback_minutes=lookback, **settings)
        report = restarted.run_once(now=step + 50 * MIN)
        assert report.engine.opened == [] and report.open_detections == 1
    later = restarted.run_once(now=step + 180 * MIN)
    assert later.engine.opened == [] and len(later.engine.resolved) == 1
    (row,) = list_detections(ch)
    assert row.detection_id == opened.detection_id and row.state == "resolved"


def test_a_restart_with_a_short_lookback_keeps_a_persisting_degradation_open(ch: Any) -> None:
    # The failure rate is 9 points above the cycle for five hours, Tuesday 14:00 to 19:00.
    for hour in range(48):
        rate = _daily_cycle_rate(hour % 24) + (0.09 if 38 <= hour < 43 else 0.0)
        traffic(ch, model="img", version="v3", start=DAY0 + hour * 60 * MIN, minutes=60,
                per_minute=15, rate=rate, seed=500 + hour)  # fmt: skip
    step = DAY0 + STEP_HOUR * 60 * MIN
    # A day of 15 events a minute gives each hour's rate some 20 failures: the chart widens its
    # dispersion by that error and re-alarms every 35-55 minutes while the shift lasts.
    settings: dict[str, Any] = {"degradation_arl0_minutes": 10_000, "resolve_after_minutes": 60}
    first = _monitor(ch, lookback_minutes=3_000, **settings).run_once(now=step + 45 * MIN)
    assert len(first.engine.opened) == 1

    # Restarted with a lookback (600 minutes) shorter than the CUSUM's warm-up (a day): the
    # replay still covers the warm-up, so the chart keeps alarming while the shift lasts.
    restarted = _monitor(ch, lookback_minutes=600, **settings)
    for minutes in range(60, 5 * 60 + 1, 30):
        report = restarted.run_once(now=step + minutes * MIN)
        assert report.engine.opened == [] and report.engine.resolved == []
    (row,) = list_detections(ch)
    assert row.state == "firing"
    assert datetime.fromisoformat(row.details["last_alarm_at"]) > step + 4 * 60 * MIN
