"""The release test across monitor restarts, over real chDB: a monitor restarted with a lookback
shorter than the release test's horizon rebuilds the test from the release's first minute, so it
pages at the minute a monitor that never restarted pages, instead of starting a new test at the
full level at the lookback's start (which spent ``alpha`` again at every restart and, here,
pages later)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alerts_seed import T0, traffic
from test_monitor import MIN, _monitor

from storage import list_detections

# A replay as short as the settings allow (an hour), against a week-long release test.
SHORT = {"lookback_minutes": 60, "degradation_min_history_minutes": 60,
         "degradation_history_minutes": 60, "settle_s": 0}  # fmt: skip


def _opened_at(client: Any, monitor: Any, minutes: range) -> datetime | None:
    for minute in minutes:
        if monitor.run_once(now=T0 + minute * MIN).engine.opened:
            (row,) = list_detections(client)
            return row.opened_at
    return None


def test_a_restart_with_a_short_lookback_rebuilds_the_release_test_from_the_release(
    ch: Any,
) -> None:
    # v1 serves throughout at 2 %; v2 runs beside it from T0+60 at 3.5 %: the evidence against
    # v2 builds up for two hours before its test pages.
    traffic(ch, model="chat", version="v1", start=T0, minutes=300, per_minute=30, rate=0.02,
            seed=1)  # fmt: skip
    traffic(ch, model="chat", version="v2", start=T0 + 60 * MIN, minutes=240, per_minute=30,
            rate=0.035, seed=2)  # fmt: skip

    uninterrupted = _opened_at(ch, _monitor(ch, **SHORT), range(70, 301, 10))
    assert uninterrupted is not None and uninterrupted > T0 + 160 * MIN  # measured: T0+187

    ch.command("TRUNCATE TABLE detections")
    first = _monitor(ch, **SHORT)
    assert _opened_at(ch, first, range(70, 161, 10)) is None
    restarted = _monitor(ch, **SHORT)  # at T0+170: the replay's hour starts after the release
    # before the fix: 11:31, 24 minutes after the uninterrupted monitor's 11:07
    assert _opened_at(ch, restarted, range(170, 301, 10)) == uninterrupted
