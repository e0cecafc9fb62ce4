"""The sampler's draw: deterministic per unit, nested across rates, floors for small versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.events import GenerationEvent
from streams.sampling import Sampler, SamplingConfig, unit_draw, unit_key


def _event(i: int, user: str | None = None, version: str = "v1") -> GenerationEvent:
    return GenerationEvent(event_id=f"e{i}", timestamp=datetime(2026, 12, 7, tzinfo=UTC),
                           model="m", model_version=version, user_id=user,
                           output={"text": "hi"})  # fmt: skip


def test_a_unit_is_in_or_out_together_and_samples_are_nested() -> None:
    sampler = Sampler(SamplingConfig(rate=0.25, version_floor_per_min=0))
    events = [_event(i, user=f"u{i % 50}") for i in range(1000)]
    p = sampler.probabilities(events)
    assert set(p) == {0.25}
    chosen = {e.user_id for e, q in zip(events, p, strict=True) if sampler.in_sample(e, q)}
    dropped = {e.user_id for e, q in zip(events, p, strict=True) if not sampler.in_sample(e, q)}
    assert chosen and dropped and not chosen & dropped
    # nested: every unit drawn at 0.1 is drawn at 0.25
    low = {e.user_id for e in events if sampler.in_sample(e, 0.1)}
    assert low <= chosen


def test_the_draw_is_uniform_and_keyed_on_the_unit() -> None:
    draws = [unit_draw(f"user:{i}") for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    share = sum(d < 0.05 for d in draws) / len(draws)
    assert 0.045 < share < 0.055  # 5 % ± 7 standard errors of 20,000 draws
    assert unit_key(_event(1, user="a")) == "user:a"
    assert unit_key(_event(1)) == "event:e1"
    assert unit_draw("user:a", salt="x") != unit_draw("user:a")


def test_a_small_version_is_scored_up_to_its_floor() -> None:
    now = [0.0]
    sampler = Sampler(SamplingConfig(rate=0.1, version_floor_per_min=30), clock=lambda: now[0])
    big = [_event(i, version="v1") for i in range(1000)]
    small = [_event(10_000 + i, version="v2") for i in range(12)]
    sampler.probabilities(big + small)
    now[0] = 61.0  # the next minute reads the last full one
    p = sampler.probabilities([big[0], small[0]])
    assert p[0] == pytest.approx(0.1)
    assert p[1] == 1.0  # 12 a minute < 30: every event


def test_the_cap_and_the_load_factor_lower_the_rate() -> None:
    now = [0.0]
    sampler = Sampler(SamplingConfig(max_events_per_s=1.0, version_floor_per_min=0),
                      clock=lambda: now[0])  # fmt: skip
    sampler.probabilities([_event(i) for i in range(600)])  # 10 events/s
    now[0] = 60.0
    assert sampler.probabilities([_event(1)]) == [pytest.approx(0.1)]
    sampler.set_load_factor(0.5)
    assert sampler.rate == pytest.approx(0.05)
    with pytest.raises(ValueError):
        sampler.set_load_factor(0.0)
    with pytest.raises(ValueError):
        SamplingConfig(rate=0.0)


def test_nothing_is_sampled_by_default() -> None:
    sampler = Sampler(SamplingConfig())
    events = [_event(i) for i in range(10)]
    assert sampler.probabilities(events) == [1.0] * 10
    assert all(sampler.in_sample(e, 1.0) for e in events)
