"""The monitor over real chDB: automatic releases, each detector end to end, pages sent exactly
once across cycles and restarts, and the drift windows it stores."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from alerts_seed import T0, prompts, traffic, webhook_server
from pydantic import SecretStr

from alerts.delivery.monitor import Monitor, register_new_releases
from alerts.delivery.notify import WebhookNotifier
from alerts.settings import MonitorConfig, NotifyConfig
from bench.baselines import BernoulliCusum
from storage.client import connect
from storage.detections import list_detections
from storage.releases import add_release, list_releases
from storage.series import minute_counts

SECRET = "s3cr3t-pd-path"
ROUTING_KEY = "pd-r0uting-k3y"
MIN = timedelta(minutes=1)


def _monitor(client: Any, url: str | None = None, **overrides: Any) -> Monitor:
    values: dict[str, Any] = {"lookback_minutes": 600, "resolve_after_minutes": 30}
    values.update(overrides)
    settings = MonitorConfig.model_validate(values)
    if url is None:
        return Monitor(client, settings)
    notify = NotifyConfig(
        webhook_url=SecretStr(url), format="pagerduty", routing_key=SecretStr(ROUTING_KEY),
        backoff_s=0.01, backoff_max_s=0.02,
    )  # fmt: skip
    return Monitor(client, settings, WebhookNotifier(notify), notify)


def test_new_versions_are_registered_as_releases_once(ch: Any) -> None:
    traffic(ch, model="chat", version="v1", start=T0 + 7 * MIN, minutes=3, per_minute=4,
            rate=0.0, seed=1)  # fmt: skip
    traffic(ch, model="chat", version="v2", start=T0 + 50 * MIN, minutes=3, per_minute=4,
            rate=0.0, seed=2)  # fmt: skip
    traffic(ch, model="chat", version="v3", start=T0 + 90 * MIN, minutes=3, per_minute=4,
            rate=0.0, seed=3)  # fmt: skip
    add_release(ch, "chat", "v3", T0 + 80 * MIN, note="announced")  # recorded by hand: kept

    registered = register_new_releases(ch)

    assert [(r.model_version, r.released_at) for r in registered] == [
        ("v1", T0 + 7 * MIN),
        ("v2", T0 + 50 * MIN),
    ]
    assert register_new_releases(ch) == []
    stored = {r.model_version: (r.released_at, r.source) for r in list_releases(ch, "chat")}
    assert stored == {
        "v1": (T0 + 7 * MIN, "auto"),
        "v2": (T0 + 50 * MIN, "auto"),
        "v3": (T0 + 80 * MIN, "manual"),
    }


def test_firing_is_paged_once_resolved_once_and_survives_restarts(
    ch: Any, chdb_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # v1 serves throughout; v2 runs as a canary next to it for an hour with a 15% failure rate.
    traffic(ch, model="chat", version="v1", start=T0, minutes=120, per_minute=30, rate=0.02,
            seed=1)  # fmt: skip
    traffic(ch, model="chat", version="v2", start=T0 + 60 * MIN, minutes=60, per_minute=30,
            rate=0.15, seed=2)  # fmt: skip
    with webhook_server() as hook:
        url = hook.url(f"/v2/enqueue/{SECRET}")
        first = _monitor(ch, url)
        cycle = first.run_once(now=T0 + 100 * MIN)
        assert cycle.notifications_sent == 1 and cycle.open_detections == 1
        assert len(hook.requests) == 1
        assert first.run_once(now=T0 + 101 * MIN).notifications_sent == 0

        # Restart: a new monitor on a reopened database replays history and pages nothing.
        ch.close()
        client = connect(f"chdb://{chdb_path}")
        try:
            second = _monitor(client, url)
            replay = second.run_once(now=T0 + 110 * MIN)
            assert replay.notifications_sent == 0 and replay.engine.opened == []
            assert replay.open_detections == 1
            # v2 is rolled back at T0+120: after 30 quiet minutes the detection resolves, once.
            traffic(client, model="chat", version="v1", start=T0 + 120 * MIN, minutes=60,
                    per_minute=30, rate=0.02, seed=3)  # fmt: skip
            resolved = second.run_once(now=T0 + 185 * MIN)
            assert resolved.notifications_sent == 1 and resolved.open_detections == 0
            third = _monitor(client, url)
            assert third.run_once(now=T0 + 190 * MIN).notifications_sent == 0
            rows = list_detections(client)
        finally:
            client.close()

    assert [r["event_action"] for r in hook.requests] == ["trigger", "resolve"]
    assert {r["dedup_key"] for r in hook.requests} == {rows[0].detection_id}
    assert hook.requests[0]["payload"]["severity"] == "error"
    assert "chat v2: stock_advice failure rate +" in hook.requests[0]["payload"]["summary"]
    assert len(rows) == 1
    row = rows[0]
    assert (row.detector, row.model, row.model_version, row.signal) == (
        "release_spike", "chat", "v2", "stock_advice",
    )  # fmt: skip
    assert (row.state, row.notified) == ("resolved", "resolved")
    assert T0 + 60 * MIN < row.opened_at <= T0 + 75 * MIN
    assert row.resolved_at == T0 + 150 * MIN  # last v2 minute ended at 120, plus 30 quiet
    assert row.statistic >= row.threshold == pytest.approx(100.0)
    assert row.effect is not None and 0.08 < row.effect < 0.2
    assert row.effect_low is not None and row.effect_high is not None
    assert row.effect_low < row.effect < row.effect_high
    assert row.details["baseline_version"] == "v1"
    assert row.details["baseline_minutes"] == {"concurrent": 60}
    assert row.details["resolve_reason"] == "no traffic from the version"
    for secret in (SECRET, ROUTING_KEY):
        assert secret not in caplog.text
    assert any("monitor cycle" in r.getMessage() for r in caplog.records)


def _daily_cycle_rate(hour: int) -> float:
    """1 % at 03:00 UTC, 3 % at 15:00: the failure rate of a product that fails more by day."""
    return 0.02 - 0.01 * math.cos(2 * math.pi * (hour - 3) / 24)


def test_slow_degradation_learns_the_daily_cycle_and_pages_a_real_step(ch: Any) -> None:
    day0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
    step_hour = 24 + 14  # Tuesday 14:00-15:00: the rate is 9 points above the cycle
    for hour in range(48):
        rate = _daily_cycle_rate(hour % 24) + (0.09 if hour == step_hour else 0.0)
        traffic(ch, model="img", version="v3", start=day0 + hour * 60 * MIN, minutes=60,
                per_minute=15, rate=rate, seed=500 + hour)  # fmt: skip
    monitor = _monitor(ch, lookback_minutes=3_000, degradation_arl0_minutes=10_000,
                       resolve_after_minutes=45)  # fmt: skip

    # Tuesday until 14:00: a day of history learned, then twelve hours of the cycle, no alarm.
    quiet = monitor.run_once(now=day0 + (24 + 14) * 60 * MIN + 3 * MIN)
    assert quiet.engine.opened == [] and list_detections(ch) == []
    # The same counts do page a CUSUM with one fixed rate learned from a warm-up hour (at
    # night, as the previous detector would have): the cycle alone is enough without a profile.
    flat = BernoulliCusum(delta=0.01, arl0_minutes=10_000, warmup_minutes=60)
    counts = minute_counts(ch, day0 + 24 * 60 * MIN, day0 + step_hour * 60 * MIN)
    series = counts[("img", "v3", "stock_advice")]
    assert sum(flat.update(*series.get(m, (0, 0))).fired for m in sorted(series)) > 0

    for hours in (15.5, 17):
        monitor.run_once(now=day0 + (24 + hours) * 60 * MIN + 3 * MIN)
    rows = list_detections(ch)
    assert [(r.detector, r.state) for r in rows] == [("degradation", "resolved")]
    row = rows[0]
    step = day0 + step_hour * 60 * MIN
    assert step < row.opened_at < step + 45 * MIN
    assert row.resolved_at is not None and row.resolved_at < step + 120 * MIN
    change_at = datetime.fromisoformat(row.details["change_at"])
    assert abs(change_at - step) <= 15 * MIN  # the CUSUM's change-point estimate
    assert row.statistic >= row.threshold >= math.log(10_000)
    assert row.effect is not None and row.effect > 0.04  # observed minus the profile's rate
    assert 0.015 < row.details["expected_since_change"] < 0.04


def test_prompt_drift_windows_explained_and_resumed_after_restart(ch: Any) -> None:
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(4, 16))
    prompts(ch, model="chat", start=T0, minutes=180, per_minute=6, topics=topics,
            mix=[0.5, 0.3, 0.2, 0.0], seed=1)  # fmt: skip
    prompts(ch, model="chat", start=T0 + 180 * MIN, minutes=60, per_minute=6, topics=topics,
            mix=[0.3, 0.2, 0.1, 0.4], seed=2)  # fmt: skip
    overrides: dict[str, Any] = {
        "prompt_drift_reference_minutes": 120, "prompt_drift_recent_sample": 300,
        "prompt_drift_reference_sample": 400, "prompt_drift_clusters": 4, "settle_s": 0,
    }  # fmt: skip
    first = _monitor(ch, **overrides).run_once(now=T0 + 240 * MIN)
    # windows ending 10:00, 11:00 and 12:00
    assert first.engine.tracks["prompt_drift"]["looks"] == 3
    windows = ch.query(
        "SELECT window_end, statistic, threshold, p_value, reference_size, recent_size, clusters "
        "FROM drift_windows FINAL ORDER BY window_end"
    ).result_rows
    assert [w[0] for w in windows] == [T0 + 120 * MIN, T0 + 180 * MIN, T0 + 240 * MIN]
    *quiet, shifted = windows
    assert all(w[1] > w[2] for w in quiet) and shifted[1] <= shifted[2] == pytest.approx(0.01 / 24)
    assert shifted[1] == shifted[3] and shifted[5] == 300
    clusters = json.loads(shifted[6])
    assert clusters[0]["change"] > 0.25 and clusters[0]["reference_share"] < 0.05
    assert all(text.startswith("topic 3 ") for text in clusters[0]["recent_examples"])
    assert {"cluster", "reference_share", "recent_share"} <= set(clusters[0])

    (row,) = list_detections(ch)
    assert (row.detector, row.key, row.state) == ("prompt_drift", "model=chat", "firing")
    assert row.opened_at == T0 + 240 * MIN and row.p_value == shifted[3]
    assert row.details["clusters"][0]["recent_examples"] == clusters[0]["recent_examples"]

    # A restarted monitor resumes after the stored windows instead of testing them again.
    again = _monitor(ch, **overrides).run_once(now=T0 + 245 * MIN)
    assert again.engine.tracks["prompt_drift"]["looks"] == 0 and again.engine.opened == []
    assert ch.query("SELECT count() FROM drift_windows").result_rows[0][0] == 3

    # The model stops sending prompts: nothing left to test, and the detection clears.
    later = _monitor(ch, **overrides).run_once(now=T0 + 330 * MIN)
    assert later.engine.tracks["prompt_drift"]["looks"] == 0 and len(later.engine.resolved) == 1
    (row,) = list_detections(ch)
    assert (row.state, row.resolved_at) == ("resolved", T0 + 300 * MIN)
    assert row.details["resolve_reason"] == "too few prompts to test since the last alarm"
