"""Prompt drift with independent units: permuting users (not prompts) keeps the test valid when
prompts come in clusters, repeats count once, examples are distinct, and the window rules
(seasonal reference, count windows, hysteresis) do what the monitor relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alerts import DriftHysteresis, PromptDriftDetector, explain_drift, mmd_permutation_test
from alerts.detectors import (
    collapse_repeats,
    count_window_start,
    look_level,
    seasonal_reference_spans,
)

DIM = 32
H = timedelta(hours=1)
MIN = timedelta(minutes=1)


def _centres(rng: np.random.Generator, k: int) -> np.ndarray:
    c = rng.normal(size=(k, DIM))
    return c / np.linalg.norm(c, axis=1, keepdims=True) * 1.5


def _users(
    rng: np.random.Generator, centres: np.ndarray, users: int, per_user: int, first_id: int
) -> tuple[np.ndarray, list[int]]:
    """Each user sticks to one topic and sends ``per_user`` prompts about it."""
    topic = rng.integers(0, len(centres), users)
    x = np.repeat(centres[topic], per_user, axis=0) + rng.normal(0, 0.6, (users * per_user, DIM))
    return x, [first_id + u for u in range(users) for _ in range(per_user)]


def test_one_users_retry_storm_is_not_drift_when_users_are_permuted() -> None:
    rng = np.random.default_rng(0)
    centres = _centres(rng, 6)
    x, x_units = _users(rng, centres, 80, 3, 0)
    y, y_units = _users(rng, centres, 50, 3, 1000)
    odd = rng.normal(size=DIM)
    storm = odd + rng.normal(0, 0.02, (30, DIM))  # thirty rephrased retries of one request
    y = np.vstack([y, storm])
    y_units = y_units + [9999] * 30
    by_prompt = mmd_permutation_test(x, y, 999, seed=1)
    by_user = mmd_permutation_test(x, y, 999, seed=1, reference_units=x_units, recent_units=y_units)
    assert by_prompt.p_value <= 0.002  # the storm alone looks like drift prompt by prompt
    assert by_user.p_value > 0.05  # but it is one user: not evidence about the population
    assert by_user.mmd2 == pytest.approx(by_prompt.mmd2)  # same statistic, other null law
    detector = PromptDriftDetector(alpha=0.01, horizon_looks=24, n_permutations=4999)
    assert not detector.update(x, y, x_units, y_units).fired


def test_unit_permutation_is_calibrated_under_clustered_prompts() -> None:
    """Users stick to topics, so prompts are not exchangeable one by one: a per-prompt test
    rejects far more often than its level; permuting users keeps the level."""
    rejections = {"prompt": 0, "user": 0}
    reps = 60
    for rep in range(reps):
        rng = np.random.default_rng([1, rep])
        centres = _centres(rng, 5)
        x, xu = _users(rng, centres, 20, 6, 0)
        y, yu = _users(rng, centres, 20, 6, 100)
        p_prompt = mmd_permutation_test(x, y, 199, seed=rep, stop_after=15).p_value
        p_user = mmd_permutation_test(
            x, y, 199, seed=rep, stop_after=15, reference_units=xu, recent_units=yu
        ).p_value
        rejections["prompt"] += p_prompt <= 0.05
        rejections["user"] += p_user <= 0.05
    assert rejections["prompt"] >= 20  # a third of the runs or more, at a 5 % level
    assert rejections["user"] <= 8  # 5 % of 60 is 3; 8 is beyond its 99 % binomial range


def test_unit_labels_must_match_the_rows() -> None:
    x = np.zeros((4, 2)) + np.arange(4)[:, None]
    with pytest.raises(ValueError):
        mmd_permutation_test(x, x + 1, 9, reference_units=[1, 2, 3, 4])
    with pytest.raises(ValueError):
        mmd_permutation_test(x, x + 1, 9, reference_units=[1, 2], recent_units=[1, 2, 3, 4])


def test_repeats_of_one_prompt_by_one_unit_count_once() -> None:
    a, b = [0.1, 0.2], [0.3, 0.4]
    vectors = [a, a, b, a, b]
    assert collapse_repeats(vectors, ["u1", "u1", "u1", "u2", "u1"]) == [0, 2, 3]
    with pytest.raises(ValueError):
        collapse_repeats(vectors, ["u1"])


def test_explanation_examples_are_distinct_prompts() -> None:
    rng = np.random.default_rng(2)
    centres = _centres(rng, 3)
    x = centres[rng.integers(0, 2, 200)] + rng.normal(0, 0.3, (200, DIM))
    new = centres[2] + rng.normal(0, 0.3, (40, DIM))
    # The grown topic's most central prompt is sent ten times (ten users asking the same).
    y = np.vstack([centres[rng.integers(0, 2, 100)] + rng.normal(0, 0.3, (100, DIM)),
                   np.repeat(centres[2][None, :], 10, axis=0), new])  # fmt: skip
    grown = explain_drift(x, y, k=3, seed=0, n_examples=3)[0]
    assert grown.recent_share > 0.25
    examples = [tuple(np.round(y[i], 6)) for i in grown.recent_examples]
    assert len(examples) == 3 and len(set(examples)) == 3
    assert sum(i in range(100, 110) for i in grown.recent_examples) == 1  # the copy, once


def test_hysteresis_makes_an_intermittent_shift_one_incident() -> None:
    looks = [(True, 1e-6), (False, 0.4), (True, 1e-6), (False, 0.3), (True, 1e-5)]
    looks += [(False, 0.5)] * 3 + [(True, 1e-6)]
    h = DriftHysteresis(clean_level=0.05, clean_looks=3)
    outcomes = [h.update(fired, p) for fired, p in looks]
    assert outcomes.count("opened") == 2 and outcomes.count("resolved") == 1
    assert outcomes[:8] == ["opened"] + ["continuing"] * 6 + ["resolved"]
    # A weak but visible shift (p below the clean level) keeps the incident open.
    h = DriftHysteresis(clean_level=0.05, clean_looks=2)
    assert [h.update(f, p) for f, p in [(True, 1e-6), (False, 0.02), (False, 0.5), (False, 0.03),
                                         (False, 0.6), (False, 0.7)]] == [
        "opened", "continuing", "continuing", "continuing", "continuing", "resolved"
    ]  # fmt: skip
    with pytest.raises(ValueError):
        DriftHysteresis(clean_looks=0)


def test_seasonal_reference_uses_the_same_hours_before_an_incident() -> None:
    end = datetime(2026, 11, 9, 15, tzinfo=UTC)
    spans = seasonal_reference_spans(end - 2 * H, end, 3)
    assert spans == [(end - 2 * H - timedelta(days=d), end - timedelta(days=d)) for d in (1, 2, 3)]
    frozen = seasonal_reference_spans(end - 2 * H, end, 3, before=end - timedelta(days=2))
    assert [s[1] for s in frozen] == [end - timedelta(days=d) for d in (2, 3, 4)]
    with pytest.raises(ValueError):
        seasonal_reference_spans(end, end, 3)


def test_count_windows_reach_back_to_the_last_tested_window() -> None:
    end = datetime(2026, 11, 9, 15, tzinfo=UTC)
    assert count_window_start(end, None, H, 24 * H) == end - H
    assert count_window_start(end, end - H, H, 24 * H) == end - H
    assert count_window_start(end, end - 5 * H, H, 24 * H) == end - 5 * H  # waiting for prompts
    assert count_window_start(end, end - 50 * H, H, 24 * H) == end - 24 * H  # capped


def test_a_count_window_is_tested_at_the_level_of_the_looks_it_replaces() -> None:
    assert look_level(0.01, 24, H, H) == pytest.approx(0.01 / 24)
    assert look_level(0.01, 24, 30 * MIN, H) == pytest.approx(0.01 / 24)  # never below a slot
    assert look_level(0.01, 24, 5 * H, H) == pytest.approx(5 * 0.01 / 24)
    assert look_level(0.01, 24, 48 * H, H) == 0.01  # capped at the whole budget
    # Disjoint windows tiling a day spend at most alpha between them.
    assert sum(look_level(0.01, 24, w * H, H) for w in (5, 7, 1, 11)) == pytest.approx(0.01)
