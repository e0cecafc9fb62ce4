"""Rates of a sampling worker's data: Hájek estimates whose intervals hold the planted rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sampled_traffic import ADVICE, NEUTRAL, TICKERS, flagged_share, run, sampling_pipeline, traffic
from typer.testing import CliRunner

from alerts.detectors.confidence import wilson_interval
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from streams.sampling import Sampler, SamplingConfig
from telltale.backfill import backfill
from telltale.cli import app
from telltale.signal_store import ClickHouseSignalStore


def _rates(chdb_path: Path, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = CliRunner().invoke(app, ["rates", "--clickhouse", f"chdb://{chdb_path}",
                                      "--format", "json", *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    return {(r["signal"], r["model_version"]): r for r in json.loads(result.stdout)["rates"]}


def test_sampled_rates_are_weighted_estimates_whose_interval_holds_the_planted_rate(
    ch: Any, chdb_path: Path, tiny_embedder: Any
) -> None:
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=30), clock=lambda: 0.0)
    pipeline = sampling_pipeline(ch, tiny_embedder, sampler)
    big = traffic(400, 5, 0.2)
    small = traffic(6, 2, 0.2, version="v2", seed=4)
    run(pipeline, big[:500] + small + big[500:])
    # Signals added later are back-filled over what was drawn, with each event's probability.
    store = ClickHouseSignalStore(ch)
    later = [SignalSpec(name="tickers_later", kind="pattern", patterns=(TICKERS,)),
             SignalSpec(name="advice_later", threshold=0.5,
                        examples=Examples(positive=ADVICE, negative=NEUTRAL[:3]))]  # fmt: skip
    for spec in later:
        fitted = train_signal(spec, tiny_embedder)
        store.save(fitted)
        backfill(ch, fitted)
    drawn = "SELECT DISTINCT event_id FROM signal_scores WHERE signal = 'tickers'"
    scored = {r[0] for r in ch.query(drawn).result_rows}
    for name in ("tickers_later", "advice_later"):
        rows = ch.query(
            "SELECT s.event_id, s.inclusion_probability, e.inclusion_probability "
            "FROM signal_scores AS s FINAL INNER JOIN events AS e FINAL USING event_id "
            "WHERE s.signal = {name:String}",
            parameters={"name": name},
        ).result_rows
        assert {r[0] for r in rows} == scored  # the events left out stay unscored
        assert all(r[1] == r[2] for r in rows)
    ch.close()

    rates = _rates(chdb_path)
    truth = flagged_share(big)
    for name in ("tickers", "tickers_later"):
        row = rates[(name, "v1")]
        assert row["scored"] == len(scored & {e.event_id for e in big}) < row["events"]
        assert row["events"] == len(big)
        assert row["rate_low"] <= truth <= row["rate_high"], (name, truth, row)
        assert row["failures"] == pytest.approx(row["rate"] * row["events"])
        # the interval is at least as wide as the scored events allow (retries share a flag)
        low, high = wilson_interval(round(row["rate"] * row["scored"]), row["scored"])
        assert 0.99 * (high - low) <= row["rate_high"] - row["rate_low"] < 0.15
        sampling = row["sampling"]
        assert sampling["effective_events"] < sampling["kish_events"] == row["scored"]
        assert sampling["weighted_events"] == pytest.approx(4 * row["scored"])
    # the small version was scored whole: its row is what it always was
    small_row = rates[("tickers", "v2")]
    assert "sampling" not in small_row
    assert small_row["scored"] == small_row["events"] == len(small)
    assert small_row["failures"] == round(flagged_share(small) * len(small))
    expected = wilson_interval(small_row["failures"], small_row["events"])
    assert (small_row["rate_low"], small_row["rate_high"]) == pytest.approx(expected)
    # by time bucket, the same estimates bucket by bucket
    minutes = _rates(chdb_path, "--bucket", "hour")
    assert minutes[("tickers", "v1")]["events"] == len(big)


def test_rates_without_sampling_are_unchanged(ch: Any, chdb_path: Path, tiny_embedder: Any) -> None:
    pipeline = sampling_pipeline(ch, tiny_embedder, None)
    events = traffic(60, 3, 0.2)
    run(pipeline, events, batch=64)
    ch.close()
    for name, row in _rates(chdb_path).items():
        assert "sampling" not in row, name
        assert row["scored"] == row["events"] == len(events)
        assert isinstance(row["failures"], int)
        expected = wilson_interval(row["failures"], row["events"])
        assert (row["rate_low"], row["rate_high"]) == pytest.approx(expected)
    assert rates_of(_rates(chdb_path), "tickers") == pytest.approx(flagged_share(events))


def rates_of(rows: dict[tuple[str, str], dict[str, Any]], signal: str) -> float:
    return float(rows[(signal, "v1")]["rate"])
