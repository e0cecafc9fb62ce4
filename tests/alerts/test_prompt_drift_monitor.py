"""Prompt drift through the monitor over real chDB: a seasonal reference, hysteresis (one
intermittent shift is one incident), permutation by user (one user's retry storm is not drift),
distinct example prompts, and count windows that test a product sending ~12 prompts an hour."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from alerts_seed import EMBEDDER

from alerts.delivery.backtest import backtest
from alerts.delivery.monitor import Monitor
from alerts.settings import MonitorConfig
from storage.detections import list_detections
from storage.rows import EmbeddingRow, EventRow, WriteBatch
from storage.writer import ClickHouseWriter

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
DIM = 16
BASE = [0.5, 0.3, 0.2, 0.0]


def _topics(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(4, DIM))


def _write(
    client: Any,
    *,
    model: str,
    start: datetime,
    minutes: int,
    every_s: int,
    topics: np.ndarray,
    mix: Callable[[datetime], list[float]],
    seed: int,
) -> None:
    """One prompt every ``every_s`` seconds, each from its own user, with the topic mix of its
    time; prompt texts name their topic."""
    rng = np.random.default_rng(seed)
    batch = WriteBatch()
    for i in range(minutes * 60 // every_s):
        at = start + timedelta(seconds=i * every_s)
        topic = int(rng.choice(4, p=mix(at)))
        vector = topics[topic] + rng.normal(0.0, 0.3, DIM)
        eid = f"{model}-{seed}-{i}"
        batch.events.append(EventRow(eid, at, model, "v1", prompt_text=f"topic {topic} q{seed}.{i}",
                                     user_id=f"user-{seed}-{i}"))  # fmt: skip
        batch.embeddings.append(
            EmbeddingRow(eid, "prompt.text", EMBEDDER, at, model, "v1", vector.tolist())
        )
    ClickHouseWriter(client).write(batch)


def _monitor(client: Any, **overrides: Any) -> Monitor:
    values: dict[str, Any] = {
        "settle_s": 0, "resolve_after_minutes": 180, "prompt_drift_recent_sample": 300,
        "prompt_drift_reference_sample": 400, "prompt_drift_clusters": 4,
    }  # fmt: skip
    values.update(overrides)
    return Monitor(client, MonitorConfig.model_validate(values))


def _windows(client: Any, model: str) -> list[tuple[Any, ...]]:
    return list(
        client.query(
            "SELECT window_start, window_end, p_value, threshold, recent_size, clusters "
            "FROM drift_windows FINAL WHERE model = {m:String} ORDER BY window_end",
            parameters={"m": model},
        ).result_rows
    )


def test_an_intermittent_shift_is_one_incident_against_a_seasonal_reference(ch: Any) -> None:
    topics = _topics(0)
    strong = {10, 12, 14}  # Tuesday: these hours send 45 % of prompts about a new topic

    def mix(at: datetime) -> list[float]:
        return [0.25, 0.2, 0.1, 0.45] if at.day == 3 and at.hour in strong else BASE

    for day in (0, 1):
        _write(ch, model="chat", start=DAY0 + day * 24 * H + 8 * H, minutes=12 * 60, every_s=20,
               topics=topics, mix=mix, seed=10 + day)  # fmt: skip
    tuesday = DAY0 + 24 * H
    monitor = _monitor(ch, lookback_minutes=13 * 60, prompt_drift_clean_level=0.01)
    monitor.run_once(now=tuesday + 20 * H)

    windows = _windows(ch, "chat")
    assert [w[1] for w in windows] == [tuesday + h * H for h in range(9, 21)]
    # Look by look, the shift comes and goes: the previous rule (clear at the first quiet look)
    # would have opened three incidents, at 11:00, 13:00 and 15:00.
    fired = [w[1] for w in windows if w[2] <= w[3]]
    assert fired == [tuesday + 11 * H, tuesday + 13 * H, tuesday + 15 * H]
    (row,) = list_detections(ch)
    assert (row.detector, row.key, row.state) == ("prompt_drift", "model=chat", "resolved")
    assert row.opened_at == tuesday + 11 * H
    assert row.resolved_at == tuesday + 18 * H  # after three clean looks: 16, 17 and 18 h
    assert row.details["alarms_in_episode"] == 3
    assert row.details["reference"] == "seasonal"
    assert row.details["reference_spans"][0] == [
        (DAY0 + 10 * H).isoformat(), (DAY0 + 11 * H).isoformat()
    ]  # fmt: skip
    assert "consecutive looks" in row.details["resolve_reason"]


def _storm(
    client: Any, model: str, topics: np.ndarray, *, one_user: bool, start: datetime
) -> list[str]:
    """Sixty prompts about the new topic in one hour: six texts sent ten times each (same
    embedding per text), from one user or from sixty users."""
    rng = np.random.default_rng(99)
    batch = WriteBatch()
    texts = [f"why does my invoice export fail (variant {v})" for v in range(6)]
    vectors = [topics[3] + rng.normal(0.0, 0.05, DIM) for _ in texts]
    for i in range(60):
        at = start + timedelta(seconds=i * 59)
        eid = f"{model}-storm-{i}"
        user = "retrying-user" if one_user else f"storm-user-{i}"
        batch.events.append(EventRow(eid, at, model, "v1", prompt_text=texts[i % 6], user_id=user))
        batch.embeddings.append(
            EmbeddingRow(eid, "prompt.text", EMBEDDER, at, model, "v1", vectors[i % 6].tolist())
        )
    ClickHouseWriter(client).write(batch)
    return texts


def test_one_users_retry_storm_is_not_drift_and_examples_are_distinct(ch: Any) -> None:
    topics = _topics(1)
    for model in ("chat", "chat2"):
        for day in (0, 1):
            _write(ch, model=model, start=DAY0 + day * 24 * H + 8 * H, minutes=4 * 60,
                   every_s=30, topics=topics, mix=lambda at: BASE, seed=20 + day)  # fmt: skip
    tuesday = DAY0 + 24 * H
    texts = _storm(ch, "chat", topics, one_user=True, start=tuesday + 10 * H)
    _storm(ch, "chat2", topics, one_user=False, start=tuesday + 10 * H)
    _monitor(ch, lookback_minutes=5 * 60).run_once(now=tuesday + 12 * H)

    # One user re-sending six requests is not a change in what users ask ...
    assert all(w[2] > w[3] for w in _windows(ch, "chat"))
    # ... sixty users asking the same is, and its examples name each prompt once.
    (row,) = list_detections(ch)
    assert (row.key, row.opened_at) == ("model=chat2", tuesday + 11 * H)
    assert row.details["units_recent"] > 100
    grown = row.details["clusters"][0]
    assert grown["change"] > 0.1
    assert len(grown["recent_examples"]) == len(set(grown["recent_examples"])) == 3
    assert set(grown["recent_examples"]) <= set(texts)
    for cluster in row.details["clusters"]:
        for side in ("reference_examples", "recent_examples"):
            assert len(cluster[side]) == len(set(cluster[side]))


def test_low_traffic_drift_is_tested_in_count_windows(ch: Any) -> None:
    topics = _topics(2)
    change = DAY0 + 24 * H + 10 * H  # Tuesday 10:00: half the prompts move to a new topic

    def mix(at: datetime) -> list[float]:
        return [0.25, 0.15, 0.1, 0.5] if at >= change else BASE

    # Twelve prompts an hour, two days: far below the fifty a window needs.
    _write(ch, model="b2b", start=DAY0, minutes=48 * 60, every_s=300, topics=topics, mix=mix,
           seed=30)  # fmt: skip
    _monitor(ch, lookback_minutes=24 * 60).run_once(now=DAY0 + 47 * H)

    windows = _windows(ch, "b2b")
    assert windows, "no look was made at twelve prompts an hour"
    for start, end, _, _, recent_size, _ in windows:
        assert recent_size >= 50 and end - start >= 4 * H  # windows of a count, not an hour
    quiet = [w for w in windows if w[1] <= change]
    assert quiet and all(w[2] > w[3] for w in quiet)
    (row,) = list_detections(ch)
    assert row.detector == "prompt_drift" and row.state == "firing"
    assert change < row.opened_at <= change + 12 * H
    assert row.details["reference"] == "seasonal"
    assert row.details["clusters"][0]["change"] > 0.25


def test_backtest_of_a_three_day_low_traffic_log_finds_the_drift_and_nothing_before(
    ch: Any,
) -> None:
    """About ten prompts an hour for three days with a daily topic cycle; 35 % of prompts move
    to a new topic on the third morning. The backtest tests count windows against the same
    hours of the previous days: nothing opens before the change, one incident after it."""
    topics = _topics(3)
    change = DAY0 + 48 * H + 8 * H

    def mix(at: datetime) -> list[float]:
        day_shift = 0.3 * math.cos(2 * math.pi * at.hour / 24)  # day and night topics differ
        base = [0.35 + day_shift, 0.35 - day_shift, 0.3, 0.0]
        if at < change:
            return base
        return [0.65 * b for b in base[:3]] + [0.35]

    _write(ch, model="b2b", start=DAY0, minutes=72 * 60, every_s=360, topics=topics, mix=mix,
           seed=40)  # fmt: skip
    result = backtest(ch, MonitorConfig(settle_s=0, resolve_after_minutes=180))
    drift = [d for d in result.detections if d.detector == "prompt_drift"]
    assert len(drift) == 1, [(d.opened_at, d.resolved_at) for d in drift]
    assert change < drift[0].opened_at <= change + 16 * H
    assert drift[0].details["reference"] == "seasonal"
    assert result.drift_windows and all(
        w.recent_size >= 50 for w in result.drift_windows
    )  # windows of a prompt count, never an hour of ten prompts
