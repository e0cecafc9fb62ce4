"""Statistical checks of the alert detectors on seeded simulations with known ground truth.

Every test here can fail: the null-hypothesis checks compare empirical rates with the nominal
level (a naive repeated test fails them, see the z-test test), and the power checks demand a
detection within a delay that a broken statistic would not reach.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from alerts import (
    Detection,
    Detector,
    PromptDriftDetector,
    ReleaseSpikeDetector,
    SeasonalCusum,
    explain_drift,
    mmd2_unbiased,
    mmd_permutation_test,
    rate_confidence_sequence,
)
from bench.baselines import BernoulliCusum, FixedHorizonZTest, two_proportion_z_test
from bench.cusum_calibration import calibrate_cusum_threshold, crossover_rate
from bench.cusum_calibration import llr_table as _llr_table

AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


# --- release spike (mixture SPRT) -------------------------------------------------------------


def _null_minute(rng: np.random.Generator, minute: int, varying: bool) -> tuple[int, ...]:
    """One minute of two versions with the *same* failure rate.

    ``varying`` makes the shared rate swing between 1% and 4% within the hour and splits traffic
    50/350: the nuisance the conditional test is built to ignore.
    """
    if varying:
        p, n_new, n_base = 0.025 + 0.015 * math.sin(2 * math.pi * minute / 60), 50, 350
    else:
        p, n_new, n_base = 0.02, 200, 200
    return n_new, int(rng.binomial(n_new, p)), n_base, int(rng.binomial(n_base, p))


def test_release_spike_false_alarms_bounded_under_null() -> None:
    runs, minutes = 200, 120
    p_values, finals = [], []
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        det = ReleaseSpikeDetector(alpha=0.1)
        for minute in range(minutes):
            state = det.update(*_null_minute(rng, minute, varying=seed % 2 == 1))
        p_values.append(state.p_value)
        finals.append(state.log_e_value)
    p = np.asarray(p_values)
    # Ville: P(sup e >= 1/a) <= a for every a; sd of a fraction over 200 runs is ~0.021 at 0.1.
    assert np.mean(p <= 0.1) <= 0.1 + 0.05
    assert np.mean(p <= 0.01) <= 0.01 + 0.025
    # The e-process stays small under the null: most runs end below e = 1.
    assert np.median(finals) < 0.0


def test_release_spike_fires_on_five_point_jump() -> None:
    delays = []
    for seed in range(10):
        rng = np.random.default_rng(1000 + seed)
        det = ReleaseSpikeDetector(alpha=0.01)
        detections = []
        for minute in range(1, 61):
            state = det.update(200, int(rng.binomial(200, 0.07)), 200, int(rng.binomial(200, 0.02)))
            found = det.detection("chat/v2", AT + timedelta(minutes=minute))
            if found is not None:
                detections.append(found)
                delays.append(minute)
        assert state.fired
        assert len(detections) == 1  # edge-triggered: one row per opened alarm
        d = detections[0]
        assert d.e_value is not None and d.e_value >= 100.0
        assert d.effect is not None and 0.02 < d.effect < 0.08
        assert d.effect_low is not None and d.effect_high is not None
        assert d.effect_low < d.effect < d.effect_high
        # The (conservative) confidence sequence excludes "no worse" by the end of the hour.
        assert 0.0 < state.cs_low < 0.05 < state.cs_high < 0.08
    assert max(delays) <= 20


def test_release_spike_ignores_better_new_version() -> None:
    rng = np.random.default_rng(7)
    det = ReleaseSpikeDetector(alpha=0.01)
    for _ in range(300):
        state = det.update(200, int(rng.binomial(200, 0.01)), 200, int(rng.binomial(200, 0.03)))
    assert not state.fired  # one-sided: an improvement is not an alarm
    assert state.cs_high < 0.0  # but the confidence sequence does see the improvement


def test_confidence_sequence_covers_true_difference_at_all_times() -> None:
    alpha, p_new, p_base = 0.1, 0.035, 0.02
    misses = 0
    widths = []
    for seed in range(60):
        rng = np.random.default_rng(5000 + seed)
        det = ReleaseSpikeDetector(alpha=alpha)
        missed = False
        for _ in range(100):
            s = det.update(200, int(rng.binomial(200, p_new)), 200, int(rng.binomial(200, p_base)))
            missed |= not s.cs_low <= p_new - p_base <= s.cs_high
        misses += missed
        widths.append(s.cs_high - s.cs_low)
    assert misses / 60 <= alpha
    assert float(np.median(widths)) < 0.025  # informative, not a trivially wide interval


def test_rate_confidence_sequence_matches_its_definition() -> None:
    n, k, alpha = 5000, 90, 0.05
    low, high = rate_confidence_sequence(n, k, alpha)
    log_mixture = math.lgamma(k + 0.5) + math.lgamma(n - k + 0.5) - math.lgamma(n + 1.0)
    log_mixture -= 2 * math.lgamma(0.5) - math.lgamma(1.0)

    def log_martingale(p: float) -> float:
        return log_mixture - (k * math.log(p) + (n - k) * math.log1p(-p))

    for bound in (low, high):
        assert log_martingale(bound) == pytest.approx(math.log(1 / alpha), abs=1e-6)
    assert log_martingale((low + high) / 2) < math.log(1 / alpha)
    assert rate_confidence_sequence(0, 0, alpha) == (0.0, 1.0)
    assert rate_confidence_sequence(10, 0, alpha)[0] == 0.0


def test_release_spike_rejects_bad_counts_and_keeps_state() -> None:
    det = ReleaseSpikeDetector()
    det.update(100, 2, 100, 1)
    with pytest.raises(ValueError):
        det.update(10, 11, 10, 0)
    assert det.state.n_new == 100 and det.state.minutes == 1


# --- fixed-horizon z-test ---------------------------------------------------------------------


def test_fixed_horizon_z_test_is_calibrated_once_but_inflated_with_looks() -> None:
    alpha, runs, minutes = 0.01, 200, 360
    single_look, any_look = 0, 0
    for seed in range(runs):
        rng = np.random.default_rng(20_000 + seed)
        counts = np.column_stack(
            [rng.binomial(200, 0.02, minutes), rng.binomial(200, 0.02, minutes)]
        )
        det = FixedHorizonZTest(alpha=alpha)
        for k_new, k_base in counts:
            state = det.update(200, int(k_new), 200, int(k_base))
        any_look += state.fired
        # The same test at one pre-planned look (the end) is fine...
        single_look += state.p_value < alpha
    assert single_look / runs <= alpha + 0.02
    # ...but watched every minute it pages several times more often than alpha.
    assert any_look / runs >= 3 * alpha


def test_two_proportion_z_test_values() -> None:
    z, p = two_proportion_z_test(1000, 40, 1000, 20)
    assert z == pytest.approx(2.6216, abs=1e-3)
    assert p == pytest.approx(0.004376, abs=1e-5)
    assert two_proportion_z_test(0, 0, 10, 1) == (0.0, 1.0)


# --- CUSUM --------------------------------------------------------------------------------------


def _direct_run_lengths(
    p0: float, p1: float, n: int, h: float, runs: int, seed: int, rate: float
) -> np.ndarray:
    """Run lengths of ``runs`` CUSUMs with failures at ``rate``, simulated directly (no renewal
    argument, no importance sampling)."""
    llr = _llr_table(p0, p1, n)
    rng = np.random.default_rng(seed)
    s = np.zeros(runs)
    lengths = np.zeros(runs)
    alive = np.ones(runs, dtype=bool)
    step = 0
    while alive.any():
        step += 1
        s[alive] = np.maximum(0.0, s[alive] + llr[rng.binomial(n, rate, int(alive.sum()))])
        hit = alive & (s >= h)
        lengths[hit] = step
        alive &= ~hit
    return lengths


@pytest.mark.parametrize(
    ("p0", "p1", "n", "arl0", "true_rate"),
    [(0.02, 0.03, 200, 300, None), (0.05, 0.1, 20, 150, None), (0.02, 0.03, 200, 300, 0.022)],
)
def test_cusum_calibration_hits_target_arl(
    p0: float, p1: float, n: int, arl0: float, true_rate: float | None
) -> None:
    h = calibrate_cusum_threshold(p0, p1, arl0, seed=3, events_per_step=n, true_rate=true_rate)
    if true_rate is None:
        assert 0.0 < h < math.log(arl0)  # Lorden: ARL0 >= exp(h), so h need not exceed this
    rate = p0 if true_rate is None else true_rate
    lengths = _direct_run_lengths(p0, p1, n, h, runs=1500, seed=11, rate=rate)
    mean = float(lengths.mean())
    # Loose: the threshold lives on a lattice, so the ARL can only be matched from above.
    assert 0.8 * arl0 < mean < 1.6 * arl0
    # And a visibly lower threshold would have missed the target: the calibration is not slack.
    lower = _direct_run_lengths(p0, p1, n, 0.75 * h, runs=1500, seed=11, rate=rate)
    assert float(lower.mean()) < 0.8 * arl0


def test_cusum_detects_shift_and_locates_change() -> None:
    change, delays = 120, []
    for seed in range(8):
        rng = np.random.default_rng(300 + seed)
        det = BernoulliCusum(delta=0.01, arl0_minutes=10_000, warmup_minutes=60, seed=seed)
        for minute in range(1, 600):
            p = 0.02 if minute <= change else 0.04
            state = det.update(200, int(rng.binomial(200, p)))
            if state.fired:
                break
        assert state.fired and minute > change, "false alarm before the change or no alarm"
        assert state.p0 is not None and abs(state.p0 - 0.02) < 0.006
        assert state.change_minute is not None and abs(state.change_minute - change) <= 20
        found = det.detection("chat/v2", AT)
        assert found is not None and found.effect is not None and found.effect > 0.005
        delays.append(minute - change)
    assert float(np.median(delays)) <= 30


def test_cusum_guarantee_raises_threshold_and_rejects_impossible_rates() -> None:
    def threshold_after_warmup(guarantee: float | None) -> float:
        det = BernoulliCusum(arl0_minutes=5000, warmup_minutes=30, arl_guarantee=guarantee)
        for _ in range(30):
            det.update(200, 4)
        assert det.state.threshold is not None
        return det.state.threshold

    assert threshold_after_warmup(0.9) > threshold_after_warmup(None)
    with pytest.raises(ValueError):
        calibrate_cusum_threshold(0.02, 0.03, 100, seed=0, true_rate=crossover_rate(0.02, 0.03))


def test_cusum_quiet_without_change() -> None:
    rng = np.random.default_rng(4)
    det = BernoulliCusum(delta=0.01, arl0_minutes=43_200, warmup_minutes=60)
    alarms = sum(det.update(200, int(rng.binomial(200, 0.02))).fired for _ in range(1440))
    assert alarms == 0
    assert det.state.threshold is not None and det.state.threshold > 5.0


# --- prompt drift -------------------------------------------------------------------------------


def _topics(
    rng: np.random.Generator, n: int, new_share: float, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings from Gaussian topic clusters; the last center is the new topic."""
    topic = rng.integers(0, len(centers) - 1, n)
    topic[rng.random(n) < new_share] = len(centers) - 1
    x = centers[topic] + rng.normal(0.0, 0.4, (n, centers.shape[1]))
    return x / np.linalg.norm(x, axis=1, keepdims=True), topic


def test_mmd_permutation_p_value_uniform_under_null_and_tiny_under_shift() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 16))
    null_p, null_mmd = [], []
    for seed in range(100):
        x, _ = _topics(rng, 60, 0.0, centers)
        y, _ = _topics(rng, 60, 0.0, centers)
        result = mmd_permutation_test(x, y, n_permutations=199, seed=seed)
        null_p.append(result.p_value)
        null_mmd.append(result.mmd2)
    p = np.asarray(null_p)
    # About uniform: P(p <= u) <= u (sd of each fraction over 100 runs <= 0.05), not all near 1.
    for level in (0.05, 0.1, 0.25):
        assert np.mean(p <= level) <= level + 0.08
    assert np.mean(p > 0.5) >= 0.35
    # Unbiased: the null mean of MMD^2 is zero, within three standard errors.
    assert abs(np.mean(null_mmd)) < 3 * np.std(null_mmd) / math.sqrt(len(null_mmd))

    x, _ = _topics(rng, 200, 0.0, centers)
    y, _ = _topics(rng, 200, 0.0, centers)
    assert mmd_permutation_test(x, y, n_permutations=999, seed=1).p_value >= 0.01
    shifted, _ = _topics(rng, 200, 0.3, centers)
    moved = mmd_permutation_test(x, shifted, n_permutations=999, seed=1)
    assert moved.p_value == pytest.approx(1 / 1000)
    assert moved.mmd2 > 0.0 and moved.mmd2 == pytest.approx(mmd2_unbiased(x, shifted))


def test_sequential_permutation_p_value_is_valid_and_cheap_under_null() -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(6, 16))
    p_values, used = [], []
    for seed in range(100):
        x, _ = _topics(rng, 60, 0.0, centers)
        y, _ = _topics(rng, 60, 0.0, centers)
        result = mmd_permutation_test(x, y, n_permutations=999, seed=seed, stop_after=10)
        p_values.append(result.p_value)
        used.append(result.n_permutations)
    # Valid: P(p <= 0.1) <= 0.1; the sd of the fraction over 100 runs is 0.03.
    assert np.mean(np.asarray(p_values) <= 0.1) <= 0.1 + 0.08
    assert np.median(used) < 100  # stopped early instead of drawing all 999


def test_explain_drift_finds_the_grown_topic() -> None:
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(6, 16))
    reference, _ = _topics(rng, 300, 0.0, centers)
    recent, topic = _topics(rng, 300, 0.3, centers)
    shifts = explain_drift(reference, recent, k=6, seed=0)
    grown = shifts[0]
    assert grown.change > 0.2 and grown.reference_share < 0.02
    assert all(topic[i] == len(centers) - 1 for i in grown.recent_examples)
    assert len(grown.recent_examples) == 3
    assert sum(s.recent_share for s in shifts) == pytest.approx(1.0)
    assert [s.change for s in shifts] == sorted((s.change for s in shifts), reverse=True)


def test_drift_detector_fires_on_shift_with_explanation() -> None:
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(6, 16))
    det = PromptDriftDetector(alpha=0.01, horizon_looks=4, n_permutations=999, explain_clusters=6)
    reference, _ = _topics(rng, 200, 0.0, centers)
    quiet = det.update(reference, _topics(rng, 200, 0.0, centers)[0])
    assert not quiet.fired and det.detection("prompts", AT) is None
    loud = det.update(reference, _topics(rng, 200, 0.4, centers)[0])
    assert loud.fired and loud.look == 2 and loud.level == pytest.approx(0.0025)
    assert loud.explanation is not None and loud.explanation[0].change > 0.25
    found = det.detection("prompts", AT)
    assert found is not None and found.p_value is not None and found.p_value <= found.threshold
    with pytest.raises(ValueError):
        PromptDriftDetector(alpha=0.01, horizon_looks=48, n_permutations=999)


# --- interfaces ---------------------------------------------------------------------------------


def test_detection_requires_aware_datetime_and_normalises_to_utc() -> None:
    with pytest.raises(ValueError):
        Detection("x", "k", datetime(2026, 1, 1), 1.0, 2.0)
    plus_two = timezone(timedelta(hours=2))
    d = Detection("x", "k", datetime(2026, 1, 1, 14, tzinfo=plus_two), 1.0, 2.0)
    assert d.opened_at == datetime(2026, 1, 1, 12, tzinfo=UTC) and d.opened_at.tzinfo is UTC


def test_detectors_follow_the_protocol() -> None:
    """The monitor's detectors (each with its own stored name) and the benchmark baselines.
    The runtime check sees attributes only; mypy checks each production detector's ``update``
    against ``Detector[[observation], state]`` (``alerts.detectors.__init__``)."""
    monitored = [ReleaseSpikeDetector(), SeasonalCusum(), PromptDriftDetector()]
    for det in [*monitored, BernoulliCusum(), FixedHorizonZTest()]:
        assert isinstance(det, Detector)
    assert [d.name for d in monitored] == ["release_spike", "degradation", "prompt_drift"]


def test_reset_forgets_everything() -> None:
    det = ReleaseSpikeDetector()
    first = [det.update(200, 9, 200, 3) for _ in range(5)][-1]
    det.reset()
    again = [det.update(200, 9, 200, 3) for _ in range(5)][-1]
    assert first == again
