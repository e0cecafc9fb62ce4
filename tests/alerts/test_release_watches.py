"""The release test's latency and usage watches over real chDB (issue 22, item 5): a release that
doubles output tokens pages on ``usage.*``, one whose latency doubles pages on ``latency.p95``,
an unchanged release with daily cycles and retry storms pages on nothing, events without usage
are left out, and the pages say what was measured and in which unit."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from alerts.delivery.backtest import backtest
from alerts.delivery.incident import rate_lines, summarize
from alerts.delivery.slack import slack_message
from alerts.detectors import estimate_dispersion
from alerts.settings import MonitorConfig
from storage import DetectionRow, Exceedance, PriceTable, exceedance_counts, quantity_quantile
from storage.rows import EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
MIN = timedelta(minutes=1)
PRICES = PriceTable.parse("chat=2.5:10")


def _cycle(at: datetime) -> float:
    return 1.0 + 0.4 * math.sin(2 * math.pi * (at.hour + at.minute / 60 - 9.0) / 24.0)


def _write(
    client: Any,
    version: str,
    start: datetime,
    minutes: int,
    per_minute: float,
    *,
    seed: int,
    latency: float = 1.0,
    tokens: float = 1.0,
    usage_share: float = 1.0,
    storms_per_hour: float = 0.0,
) -> int:
    """Events of ``chat``/``version``: Poisson traffic with a daily cycle; log-normal latency
    (log-sd 0.5, slower at the peak) and output tokens (log-sd 0.6, longer at the peak), scaled
    by ``latency`` and ``tokens``; a share ``1 - usage_share`` reports no tokens; retry storms of
    one session repeating one prompt 10-20 times in three minutes, each copy slow (a timeout);
    one signal failing 2 % of units on every version."""
    rng = np.random.default_rng(seed)
    batch = WriteBatch()

    def event(eid: str, at: datetime, prompt: str, session: str, slow: float) -> None:
        cycle = _cycle(at)
        has_usage = rng.random() < usage_share
        out = max(1, round(200 * cycle * tokens * rng.lognormal(0.0, 0.6))) if has_usage else None
        batch.events.append(EventRow(
            eid, at, "chat", version, prompt_text=prompt, session_id=session,
            latency_ms=float(400 * cycle * slow * latency * rng.lognormal(0.0, 0.5)),
            input_tokens=int(500 * rng.lognormal(0.0, 0.5)) if has_usage else None,
            output_tokens=out,
        ))  # fmt: skip
        flagged = bool(rng.random() < 0.02)
        batch.scores.append(ScoreRow(eid, "stock_advice", 1, at, "chat", version, 0.9 * flagged,
                                     flagged))  # fmt: skip

    for m in range(minutes):
        at = start + m * MIN
        for i in range(int(rng.poisson(per_minute * _cycle(at)))):
            eid = f"{version}-{seed}-{m}-{i}"
            event(eid, at + timedelta(seconds=int(rng.integers(0, 60))), f"q {eid}", f"s {eid}", 1)
        if rng.random() < storms_per_hour / 60.0:
            storm = f"storm {version}-{seed}-{m}"
            for j in range(int(rng.integers(10, 21))):
                copy_at = at + timedelta(seconds=int(rng.integers(0, 180)))
                event(f"{storm}-{j}", copy_at, storm, storm, 5.0)
    return ClickHouseWriter(client).write(batch)


def _canary(client: Any, **v2: Any) -> None:
    """v1 alone for two hours (the thresholds' history), then v2 beside it for two hours."""
    _write(client, "v1", T0, 240, 20, seed=1)
    _write(client, "v2", T0 + 120 * MIN, 120, 20, seed=2, **v2)


def _release_pages(client: Any, prices: PriceTable | None = None, **overrides: Any) -> list[Any]:
    settings = MonitorConfig.model_validate({"resolve_after_minutes": 30, **overrides})
    report = backtest(client, settings, prices=prices)
    return [d for d in report.detections if d.detector == "release_spike"]


def _figures(page: DetectionRow) -> dict[str, dict[str, Any]]:
    return {s["signal"]: s for s in page.details["signals"]}


def test_doubled_output_tokens_page_on_usage_with_the_threshold_and_unit(ch: Any) -> None:
    # Half of v2's events report no usage: they are left out, not counted as cheap answers.
    _canary(ch, tokens=2.0, usage_share=0.5)

    (page,) = _release_pages(ch, prices=PRICES)
    assert (page.model_version, page.signal.split(",")[0]) == ("v2", "usage.cost_per_event")
    assert "latency.p95" not in page.signal and "stock_advice" not in page.signal
    usage = _figures(page)["usage.cost_per_event"]
    assert usage["watch"]["unit"] == "in price-table currency"
    assert usage["watch"]["level"] == 0.5 and usage["watch"]["baseline_units"] >= 1_500
    # (Later hours of the cycle cost more than the history's hours: v1 too is above its median
    # more than half of the time; the test compares the two shares, not either with 50 %.)
    assert usage["k_new"] / usage["n_new"] > usage["k_base"] / usage["n_base"] + 0.2
    assert page.opened_at <= T0 + 150 * MIN
    assert page.details["family_size"] == 3  # one signal and two watches share alpha
    # The figures run to the end of the data: v2's units that reported usage, half of them.
    _, with_usage, v2_events = _counted(ch, "v2", T0 + 120 * MIN, T0 + 240 * MIN)
    assert usage["n_new"] == with_usage
    assert 0.4 * v2_events < with_usage < 0.6 * v2_events

    summary = summarize("trigger", page)
    assert "chat v2: usage.cost_per_event share of units above 0.00" in summary
    assert " in price-table currency +" in summary
    (line,) = rate_lines(page)
    assert line.startswith("usage.cost_per_event — units above ")
    assert "in price-table currency, v1's p50 before the release: v2 " in line
    blocks = str(slack_message("trigger", page)["blocks"])
    assert "usage.cost_per_event" in blocks and "price-table currency" in blocks

    # Unpriced, the same release pages on output tokens.
    (unpriced,) = _release_pages(ch)
    assert unpriced.signal.split(",")[0] == "usage.output_tokens"
    assert _figures(unpriced)["usage.output_tokens"]["watch"]["unit"] == "output tokens"


def test_doubled_latency_pages_on_latency_p95(ch: Any) -> None:
    _canary(ch, latency=2.0)

    (page,) = _release_pages(ch)
    assert page.signal == "latency.p95"
    watch = _figures(page)["latency.p95"]["watch"]
    assert watch["unit"] == "ms" and watch["level"] == 0.95
    threshold, events = quantity_quantile(
        ch, T0 - timedelta(days=7), T0 + 120 * MIN, model="chat", model_version="v1",
        quantity="latency_ms", level=0.95,
    )  # fmt: skip
    assert watch["threshold"] == pytest.approx(threshold) and watch["baseline_units"] == events
    assert page.opened_at <= T0 + 150 * MIN
    assert "chat v2: latency.p95 share of units above " in summarize("trigger", page)
    assert " ms +" in summarize("trigger", page)

    # Switched off, nothing watches latency (and the family is the signal alone).
    assert _release_pages(ch, release_spike_watch_latency=False) == []


def test_an_unchanged_release_with_daily_cycles_and_retry_storms_does_not_page(ch: Any) -> None:
    # A full cut-over on Tuesday 08:00 after eight days of v1: lagged baselines, day blocks.
    release = T0 + timedelta(days=8)
    _write(ch, "v1", T0, 8 * 1_440, 1.5, seed=3, storms_per_hour=3)
    _write(ch, "v2", release, 2 * 1_440, 1.5, seed=4, storms_per_hour=3)

    settings = MonitorConfig.model_validate({"resolve_after_minutes": 30})
    report = backtest(ch, settings)
    assert [d for d in report.detections if d.detector == "release_spike"] == []
    # Three tests ran on v2 (the signal and both watches), over thousands of units each.
    assert report.engine.tracks["release_spike"]["series"] == 3
    counted = _counted(ch, "v2", release, release + timedelta(days=2))
    assert counted[0] > 2_000 and counted[1] > 2_000


def _counted(client: Any, version: str, since: datetime, until: datetime) -> tuple[int, int, int]:
    """Units of the latency watch, of the token watch, and events with a score."""
    watches = [Exceedance("lat", "latency_ms", 0.0), Exceedance("tok", "output_tokens", 0.0)]
    found = exceedance_counts(client, since, until, model="chat", model_version=version,
                              watches=watches)  # fmt: skip
    units = client.query(
        "SELECT uniqExact(event_id) FROM signal_scores WHERE model_version = {v:String} "
        "AND timestamp >= {s:DateTime64(3, 'UTC')} AND timestamp < {u:DateTime64(3, 'UTC')}",
        parameters={"v": version, "s": since, "u": until},
    ).result_rows[0][0]
    totals = [
        sum(n for n, _ in found.get(("chat", version, w), {}).values()) for w in ("lat", "tok")
    ]
    return totals[0], totals[1], int(units)


def test_the_day_variance_of_a_watch_is_read_on_the_log_odds_scale() -> None:
    """A watch's share sits near 1/2 (usage) where a relative day shift ``c`` moves the log odds
    by ``c / (1 - p)``, twice ``c``: the plain day variance would be 4 times too small."""
    history = {T0 + i * MIN: (20, 10) for i in range(3 * 1_440)}
    d = estimate_dispersion(history, day_cv_floor=0.05)
    assert d.day_variance == pytest.approx(2 * 0.05**2)
    assert d.log_odds_day_variance(0.5) == pytest.approx(4 * d.day_variance)
    assert d.log_odds_day_variance(0.02) == pytest.approx(d.day_variance / 0.98**2)
    c, p = 0.01, 0.5
    shift = math.log(p * (1 + c) / (1 - p * (1 + c))) - math.log(p / (1 - p))
    assert shift == pytest.approx(c / (1 - p), rel=0.02)
