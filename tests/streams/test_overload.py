"""Overload control: a fake clock and scripted lags and throughputs drive the load factor."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from types import SimpleNamespace
from typing import NamedTuple

import pytest

from streams.overload import (
    CommitProgress,
    LoadShedding,
    OverloadConfig,
    OverloadControl,
    load_shedding,
)
from streams.sampling import Sampler, SamplingConfig

CONFIG = OverloadConfig(max_lag_s=60, min_load_factor=1 / 64, recover_share=0.25,
                        recover_after_s=60, window_s=30, lag_interval_s=5)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Worker:
    """A scripted worker: ``lag`` records behind, consuming ``per_s`` records a second."""

    def __init__(self, control: OverloadControl, clock: Clock) -> None:
        self.control, self.clock = control, clock
        self.consumed = 0
        self.factors: list[tuple[float, float]] = []  # (time, factor) at each change

    def run(self, seconds: float, lag: int, per_s: float, every: float = 5.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += every
            self.consumed += int(per_s * every)
            step = self.control.observe(lag, self.consumed)
            if step.changed:
                self.factors.append((self.clock.now, step.factor))


def _setup(config: OverloadConfig = CONFIG) -> Worker:
    clock = Clock()
    worker = Worker(OverloadControl(config, clock), clock)
    worker.control.observe(0, 0)  # the first measurement: where the throughput window starts
    return worker


def test_nothing_is_decided_until_the_throughput_window_is_covered() -> None:
    worker = _setup()
    worker.run(25, lag=100_000, per_s=10)  # 10,000 s behind, but only 25 s of throughput
    assert worker.factors == [] and worker.control.factor == 1.0
    worker.run(5, lag=100_000, per_s=10)
    assert worker.control.factor == 0.5


def test_the_factor_halves_once_per_window_down_to_the_floor() -> None:
    worker = _setup()
    worker.run(600, lag=100_000, per_s=10)
    times = [t for t, _ in worker.factors]
    assert [f for _, f in worker.factors] == [2.0**-k for k in range(1, 7)]  # 1/2 .. 1/64
    assert all(b - a >= CONFIG.window_s for a, b in itertools.pairwise(times))
    assert worker.control.factor == CONFIG.min_load_factor  # stays at the floor


def test_a_lag_within_the_band_holds_the_factor() -> None:
    worker = _setup()
    worker.run(60, lag=100_000, per_s=100)  # 1,000 s behind: halved at 30 s and 60 s
    assert worker.control.factor == 0.25
    # 100 records/s, 3,000 records: 30 s behind, between 15 s (a quarter of 60) and 60 s
    worker.run(1200, lag=3_000, per_s=100)
    assert worker.control.factor == 0.25


def test_the_factor_doubles_after_a_calm_period_and_waits_as_long_again() -> None:
    worker = _setup()
    worker.run(60, lag=100_000, per_s=100)
    assert worker.control.factor == 0.25
    start = worker.clock.now
    worker.run(600, lag=100, per_s=100)  # 1 s behind: calm
    rises = [(t - start, f) for t, f in worker.factors if t > start]
    assert [f for _, f in rises] == [0.5, 1.0]
    assert rises[0][0] >= CONFIG.recover_after_s
    assert rises[1][0] - rises[0][0] >= CONFIG.recover_after_s
    worker.run(600, lag=0, per_s=0)  # idle, nothing behind: stays at 1
    assert worker.control.factor == 1.0


def test_a_spike_within_the_calm_period_restarts_it() -> None:
    worker = _setup()
    worker.run(30, lag=100_000, per_s=100)
    assert worker.control.factor == 0.5
    start = worker.clock.now
    worker.run(40, lag=100, per_s=100)
    worker.run(5, lag=3_000, per_s=100)  # 30 s behind: in the band, the calm period restarts
    worker.run(55, lag=100, per_s=100)
    assert worker.control.factor == 0.5
    worker.run(10, lag=100, per_s=100)
    assert worker.control.factor == 1.0
    assert worker.factors[-1][0] - start >= 45 + CONFIG.recover_after_s


def test_a_doubling_that_does_not_hold_doubles_the_next_wait() -> None:
    worker = _setup()
    control = worker.control
    worker.run(30, lag=100_000, per_s=100)
    assert control.factor == 0.5
    worker.run(65, lag=100, per_s=100)  # calm from the first calm measurement on, 60 s
    assert control.factor == 1.0  # a probe
    worker.run(30, lag=100_000, per_s=100)  # at once behind again: the probe failed
    assert control.factor == 0.5
    assert control.recover_wait_s == 2 * CONFIG.recover_after_s
    before = worker.clock.now
    worker.run(115, lag=100, per_s=100)
    assert control.factor == 0.5  # 60 s calm is no longer enough
    worker.run(10, lag=100, per_s=100)
    assert control.factor == 1.0
    assert worker.factors[-1][0] - before >= 2 * CONFIG.recover_after_s


def test_a_doubling_that_holds_resets_the_wait() -> None:
    worker = _setup()
    control = worker.control
    worker.run(60, lag=100_000, per_s=100)
    assert control.factor == 0.25
    worker.run(65, lag=100, per_s=100)
    assert control.factor == 0.5
    worker.run(30, lag=100_000, per_s=100)  # the probe failed
    assert control.factor == 0.25 and control.recover_wait_s == 120
    worker.run(125, lag=100, per_s=100)
    assert control.factor == 0.5  # probe after the longer wait
    worker.run(120, lag=100, per_s=100)
    assert control.factor == 1.0  # it held: the wait is back to 60 s
    assert control.recover_wait_s == CONFIG.recover_after_s


def test_no_flapping_under_an_oscillating_lag() -> None:
    """Lag jumping across the band every measurement: at most one change per window."""
    worker = _setup()
    for i in range(240):  # 20 minutes, 5 s apart
        worker.run(5, lag=100_000 if i % 2 else 100, per_s=100)
    times = [t for t, _ in worker.factors]
    assert all(b - a >= CONFIG.window_s for a, b in itertools.pairwise(times))
    assert all(f < 1.0 for _, f in worker.factors)  # never calm long enough to rise


def test_a_burst_after_an_idle_spell_is_read_against_full_speed() -> None:
    """An idle worker that a burst just reached has consumed little: not because it is slow."""
    worker = _setup()
    worker.run(60, lag=0, per_s=0)  # idle
    worker.run(5, lag=2_000, per_s=0)  # a burst arrives: nothing known about its speed yet
    worker.run(10, lag=2_000, per_s=200)  # 10 s at full speed: 2,000 records are 10 s
    assert worker.control.factor == 1.0
    worker.clock.now += 5
    step = worker.control.observe(1_500, worker.consumed + 1_000)  # 5 s more at full speed
    assert step.throughput == pytest.approx(3_000 / 15)
    assert worker.control.factor == 1.0


def test_a_worker_that_keeps_up_is_never_slowed_down() -> None:
    """Consuming what arrives, with a few records in flight: not saturated, whatever the ratio
    of those records to the traffic."""
    worker = _setup()
    worker.run(600, lag=50, per_s=1)  # 50 waiting at a trickle of 1 a second, drained each time
    assert worker.factors == []


def test_a_saturated_worker_past_the_bound_is_slowed_down() -> None:
    worker = _setup()
    worker.run(30, lag=0, per_s=0)
    worker.run(30, lag=20_000, per_s=100)  # 200 s behind at full speed, saturated 25 s of 30
    assert worker.control.factor == 0.5


def test_nothing_committed_with_records_waiting_is_infinitely_behind() -> None:
    worker = _setup()
    worker.run(30, lag=10, per_s=0)
    step = worker.control.observe(10, worker.consumed)
    assert step.lag_s == math.inf and worker.control.factor == 0.5


def test_hold_forgets_the_window_and_the_calm_period() -> None:
    worker = _setup()
    worker.run(30, lag=100_000, per_s=100)
    assert worker.control.factor == 0.5
    worker.run(50, lag=100, per_s=100)
    worker.control.hold()  # storage away: nothing decided until a full window again
    worker.run(25, lag=100, per_s=100)
    assert worker.control.factor == 0.5
    step = worker.control.observe(100, worker.consumed)
    assert step.throughput is None


def test_off_is_refused_and_the_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_lag_s"):
        OverloadControl(OverloadConfig())
    assert not OverloadConfig().enabled
    with pytest.raises(ValueError):
        OverloadConfig(max_lag_s=60, min_load_factor=0)


def test_commit_progress_counts_new_commits_per_partition() -> None:
    progress = CommitProgress()
    assert progress.update({("t", 0): 100, ("t", 1): 50}) == 0  # first sight: a baseline
    assert progress.update({("t", 0): 130, ("t", 1): 60}) == 40
    assert progress.update({("t", 0): 130, ("t", 2): 900}) == 40  # a new partition: baseline
    assert progress.update({("t", 0): 120, ("t", 2): 910}) == 50  # a reset counts nothing


def test_load_shedding_sets_the_sampler_reports_and_logs_each_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sampler = Sampler(SamplingConfig(rate=0.5))
    reported: list[float] = []
    shedding = LoadShedding(OverloadControl(CONFIG, clock), sampler, reported.append)
    committed = 0
    caplog.set_level(logging.INFO, logger="streams.overload")
    for _ in range(7):  # 35 s at 10 records/s, 10,000 behind
        clock.now += 5
        committed += 50
        shedding.update({("t", 0): (committed + 10_000, committed)})
    assert sampler.load_factor == 0.5
    assert sampler.rate == 0.25  # the configured rate times the load factor
    assert reported[-1] == 0.25 and set(reported[:-1]) == {0.5}
    changes = [r.getMessage() for r in caplog.records if "sampling rate now" in r.getMessage()]
    assert len(changes) == 1 and "0.25 (was 0.5)" in changes[0] and "10000 records" in changes[0]
    shedding.hold()
    assert reported[-1] == 0.25


class _TP(NamedTuple):
    topic: str
    partition: int


class _Consumer:
    def __init__(self) -> None:
        self.ends = {_TP("t", 0): 0, _TP("t", 1): 0}
        self._committed_offset = {_TP("t", 0): 0, _TP("t", 1): 0}

    def assignment(self) -> set[_TP]:
        return set(self.ends)

    async def highwaters(self, *tps: _TP) -> dict[_TP, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def earliest_offsets(self, *tps: _TP) -> dict[_TP, int]:
        return dict.fromkeys(tps, 0)


class _App:
    def __init__(self) -> None:
        self.consumer = _Consumer()
        self.monitor = SimpleNamespace(tp_committed_offsets={})


def test_the_worker_feeds_the_lag_to_the_control_and_holds_while_it_waits() -> None:
    """The worker's lag timer: offsets to the gauge and the control; the sampler's rate to the
    gauge; nothing decided while storage is away."""
    from streams.batch_io import WorkerHealth
    from streams.metrics import WorkerMetrics
    from streams.settings import WorkerConfig
    from streams.worker import _Runtime

    async def no_dead_letters(key: bytes | None, value: bytes) -> None:
        return None

    health = WorkerHealth()
    runtime = _Runtime(WorkerConfig(), lambda: None, no_dead_letters, None, None,  # type: ignore[arg-type,return-value]
                       health)  # fmt: skip
    clock, app, metrics = Clock(), _App(), WorkerMetrics()
    sampler = Sampler(SamplingConfig())
    shedding = LoadShedding(OverloadControl(CONFIG, clock), sampler, metrics.set_sampling_rate)
    consumer = app.consumer

    def tick(seconds: float, behind: int, per_s: int) -> None:
        clock.now += seconds
        for tp in consumer.ends:  # each partition: per_s a second consumed, `behind` waiting
            consumer._committed_offset[tp] += per_s * int(seconds)
            consumer.ends[tp] = consumer._committed_offset[tp] + behind
        asyncio.run(runtime.measure_lag(app, ["t"], metrics, shedding))

    try:
        tick(0, 0, 0)
        health.wait("storage unavailable: boom")
        for _ in range(12):
            tick(5, 50_000, 10)
        assert sampler.load_factor == 1.0  # held: the worker waits, it is not slow
        health.wait(None)
        for _ in range(7):
            tick(5, 50_000, 10)
        assert sampler.load_factor == 0.5
        gauge = metrics.registry.get_sample_value("telltale_worker_sampling_rate")
        lag = metrics.registry.get_sample_value(
            "telltale_worker_consumer_lag", {"topic": "t", "partition": "0"}
        )
        assert gauge == 0.5 and lag == 50_000
    finally:
        runtime._executor.shutdown()


def test_without_the_control_only_the_rate_is_reported() -> None:
    sampler = Sampler(SamplingConfig(rate=0.5))
    reported: list[float] = []
    assert load_shedding(None, CONFIG, reported.append) is None
    assert load_shedding(sampler, OverloadConfig(), None) is None  # nothing to do
    shedding = load_shedding(sampler, OverloadConfig(), reported.append)
    assert shedding is not None and shedding.control is None and reported == [0.5]
    assert shedding.update({("t", 0): (10_000, 0)}) is None
    assert sampler.load_factor == 1.0 and reported == [0.5, 0.5]
    on = load_shedding(sampler, CONFIG, reported.append)
    assert on is not None and on.control is not None
