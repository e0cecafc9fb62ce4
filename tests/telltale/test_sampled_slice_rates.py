"""``rates --by KEY`` under sampling: each sampled slice row is a Hájek estimate whose interval
holds the slice's planted rate; rows without sampled events are what they always were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sampled_traffic import flagged_share, run, sampling_pipeline, traffic
from typer.testing import CliRunner

from alerts import slice_label
from alerts.detectors.confidence import wilson_interval
from storage.slices import slice_counts
from streams.events import GenerationEvent
from streams.sampling import Sampler, SamplingConfig
from streams.slices import SliceConfig, Slicer
from telltale.cli import app

KEYS = ("locale", "tier")


def _traffic(users: int = 200) -> dict[tuple[str, str], list[GenerationEvent]]:
    """Three cells of one version, ``users`` of 5 events each, planted rates 8 %, 30 %, 30 %."""
    cells = {("de", "free"): (0.08, 1), ("en", "free"): (0.3, 2), ("en", "pro"): (0.3, 3)}
    found = {}
    for n, ((locale, tier), (rate, seed)) in enumerate(cells.items()):
        found[(locale, tier)] = traffic(
            users, 5, rate, seed=seed, first_id=5 * users * n, unit=f"{locale}-{tier}-",
            attributes={"locale": locale, "tier": tier},
        )  # fmt: skip
    return found


def _rates(chdb_path: Path, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["rates", "--clickhouse", f"chdb://{chdb_path}",
                                      "--format", "json", "--signal", "tickers",
                                      *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)["rates"]
    return rows


def _by(*keys: str) -> list[str]:
    return [arg for key in keys for arg in ("--by", key)]


def _cell(events: list[GenerationEvent], values: list[str], by: list[str]) -> bool:
    return all(events[0].attributes[k] == v for k, v in zip(by, values, strict=True))


def test_sampled_slice_rows_are_weighted_estimates_whose_interval_holds_the_planted_rate(
    ch: Any, chdb_path: Path, tiny_embedder: Any
) -> None:
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=30), clock=lambda: 0.0)
    slicer = Slicer(SliceConfig(keys=KEYS))
    pipeline = sampling_pipeline(ch, tiny_embedder, sampler, slicer=slicer)
    cells = _traffic()
    small = traffic(6, 2, 0.2, version="v2", seed=4, attributes={"locale": "de", "tier": "free"})
    everything = [e for events in cells.values() for e in events]
    run(pipeline, everything[:1500] + small + everything[1500:])
    ch.close()

    rows = _rates(chdb_path, *_by(*KEYS))
    sampled = [r for r in rows if r["model_version"] == "v1"]
    assert {tuple(r["by"]) for r in sampled} == {("locale",), ("tier",), KEYS}
    for r in sampled:
        members = [e for events in cells.values() if _cell(events, r["values"], r["by"])
                   for e in events]  # fmt: skip
        truth = flagged_share(members)
        assert r["scored"] < r["events"] == len(members), r  # every event seen, counted
        assert r["rate_low"] <= truth <= r["rate_high"], (truth, r)
        assert r["failures"] == pytest.approx(r["rate"] * r["events"])
        low, high = wilson_interval(round(r["rate"] * r["scored"]), r["scored"])
        assert 0.99 * (high - low) <= r["rate_high"] - r["rate_low"]  # no narrower than scored
        sampling = r["sampling"]
        assert sampling["events_basis"] == "counted"
        assert sampling["kish_events"] == r["scored"]
        assert sampling["effective_events"] <= sampling["kish_events"]
        assert sampling["weighted_events"] == pytest.approx(4 * r["scored"])
    by_locale = {r["values"][0]: r for r in sampled if r["by"] == ["locale"]}
    assert by_locale["de"]["rate_high"] < by_locale["en"]["rate_low"]  # the slices separate
    # the small version was scored whole: its rows are plain counts, as without sampling
    for r in (r for r in rows if r["model_version"] == "v2"):
        assert "sampling" not in r
        assert r["scored"] == r["events"] == len(small)
        assert r["failures"] == round(flagged_share(small) * len(small))
    # with --corrected, the sampled rows' effective count carries over
    corrected = _rates(chdb_path, *_by("locale"), "--corrected")
    assert all("correction" in r for r in corrected)


def test_merged_small_slices_under_sampling_estimate_their_events(
    ch: Any, chdb_path: Path, tiny_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``other`` row (small cells merged) cannot count its events from ``events``: it
    estimates them as ``Σ w`` and says so."""
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=30), clock=lambda: 0.0)
    pipeline = sampling_pipeline(ch, tiny_embedder, sampler, slicer=Slicer(SliceConfig(keys=KEYS)))
    big = traffic(200, 5, 0.2, seed=1, unit="big-", attributes={"locale": "de", "tier": "free"})
    few = [e for n, locale in enumerate(("fr", "it", "pt"))
           for e in traffic(40, 5, 0.2, seed=5 + n, first_id=2000 + 100 * n, unit=f"{locale}-",
                            attributes={"locale": locale, "tier": "free"})]  # fmt: skip
    run(pipeline, big + few)
    ch.close()
    monkeypatch.setenv("TELLTALE_PRIVACY_MIN_SLICE_USERS", "20")  # about 10 drawn a locale
    rows = {r["slice"]: r for r in _rates(chdb_path, *_by("locale"))}
    assert set(rows) == {"locale=de", "locale=other"}
    other = rows["locale=other"]
    assert other["merged"]
    assert other["sampling"]["events_basis"] == "estimated"
    assert other["events"] == pytest.approx(other["sampling"]["weighted_events"])
    assert other["events"] == pytest.approx(4 * other["scored"])
    assert other["rate_low"] <= flagged_share(few) <= other["rate_high"]
    assert rows["locale=de"]["events"] == len(big)


def test_slice_rows_without_sampling_are_unchanged(
    ch: Any, chdb_path: Path, tiny_embedder: Any
) -> None:
    pipeline = sampling_pipeline(ch, tiny_embedder, None, slicer=Slicer(SliceConfig(keys=KEYS)))
    cells = _traffic(40)  # every event is embedded: a small run
    run(pipeline, [e for events in cells.values() for e in events])
    groupings = [["locale"], ["tier"], list(KEYS)]
    expected = []
    for grouping in groupings:
        for c in slice_counts(ch, grouping, signal="tickers"):
            low, high = wilson_interval(c.failures, c.events)
            expected.append({
                "by": grouping, "values": list(c.values),
                "slice": slice_label(tuple(grouping), c.values),
                "signal": c.signal, "model": c.model, "model_version": c.model_version,
                "events": c.events, "scored": c.events, "failures": c.failures,
                "rate": c.failures / c.events, "rate_low": low, "rate_high": high,
                "merged": False,
            })  # fmt: skip
    ch.close()
    rows = _rates(chdb_path, *_by(*KEYS))
    assert rows == expected
    assert sum(r["events"] for r in rows if r["by"] == ["locale"]) == 3 * 40 * 5
