"""Overload control: the worker samples less when it falls behind, and more once it caught up.

The worker measures its consumer lag (records not yet committed by its group) every
``lag_interval_s``. :class:`OverloadControl` turns each measurement into a lag in seconds, the
records behind divided by the records the group commits per second at full speed (how long the
worker needs to reach what is already there), and sets the sampler's load factor
(:meth:`streams.sampling.Sampler.set_load_factor`). Full speed is measured over the last
``window_s``, in the intervals between two measurements in which the worker consumed no more
than was already waiting at the first (so it never ran dry: an idle worker that a burst just
reached is not slow). A worker saturated for less than a third of the window is keeping up and
is never slowed down; its lag is read against all it consumed (the traffic), which only makes
calm harder to reach:

* past the bound (``max_lag_s``), it halves the factor, down to ``min_load_factor``; again at
  most once per ``window_s``, so each step is seen in the throughput before the next one;
* below ``recover_share`` of the bound for ``recover_after_s``, it doubles the factor, up to 1,
  and waits as long again before the next doubling;
* between the two it holds (hysteresis). A doubling undone by a halving within the next
  ``window_s`` + ``recover_after_s`` was premature: the next calm period must last twice as long
  (up to ``_MAX_BACKOFF`` times), so a traffic level the worker can only just carry costs one
  probe now and then, not a change every minute. A doubling that holds resets the wait.

While the worker cannot make progress for other reasons (storage or the broker away) the worker
calls :meth:`OverloadControl.hold`: nothing changes and the throughput window starts afresh.
Everything here is arithmetic on what it is given: no Kafka, no clock of its own but ``clock``.
:class:`LoadShedding` is what the worker calls: it joins the control to the sampler, logs each
change of the rate in effect and reports it (the ``telltale_worker_sampling_rate`` gauge).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, Field

from streams.sampling import Sampler

__all__ = [
    "CommitProgress",
    "LoadShedding",
    "OverloadConfig",
    "OverloadControl",
    "Step",
    "load_shedding",
]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 8.0
"""The longest calm period asked before a doubling, in multiples of ``recover_after_s``."""

Offsets = Mapping[tuple[str, int], tuple[int, int]]
"""Per (topic, partition): the end offset and the group's committed offset."""


class OverloadConfig(BaseModel):
    """When the worker samples less because it falls behind (``max_lag_s`` 0: never)."""

    max_lag_s: float = Field(
        default=0.0,
        ge=0,
        description="lag bound in seconds: past it the worker halves its sampling rate (0: off)",
    )
    min_load_factor: float = Field(
        default=1 / 64,
        gt=0,
        le=1,
        description="the lowest share of the configured sampling rate overload control sets",
    )
    recover_share: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="the rate is doubled again once the lag stays below this share of the bound",
    )
    recover_after_s: float = Field(
        default=60.0, ge=0, description="how long the lag stays low before the rate is doubled"
    )
    window_s: float = Field(
        default=30.0,
        gt=0,
        description="throughput averaged over this long; also the least time between changes",
    )
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="how often the lag is measured while overload control is on"
    )

    @property
    def enabled(self) -> bool:
        return self.max_lag_s > 0


@dataclass(frozen=True)
class Step:
    """One measurement's outcome: the load factor after it and what it was based on."""

    factor: float
    changed: bool
    lag: int
    """Records behind."""
    throughput: float | None
    """Records committed per second: at full speed when the worker was saturated for a third of
    the window or more, else over the whole window; None until the window is covered."""
    lag_s: float | None
    """``lag / throughput`` (inf when nothing was committed with records waiting); None until
    the window is covered."""


class OverloadControl:
    """Halves the load factor when the lag passes the bound, doubles it once caught up."""

    def __init__(
        self,
        config: OverloadConfig,
        clock: Callable[[], float] = time.monotonic,
        factor: float = 1.0,
    ) -> None:
        if not config.enabled:
            raise ValueError("overload control needs max_lag_s > 0")
        self.config = config
        self._clock = clock
        self._factor = factor
        # (time, records committed so far, records behind)
        self._history: deque[tuple[float, int, int]] = deque()
        self._last_change = -math.inf
        self._last_was_rise = False
        self._calm_since: float | None = None
        self._backoff = 1.0

    @property
    def factor(self) -> float:
        return self._factor

    @property
    def recover_wait_s(self) -> float:
        """How long the lag must stay low now before the next doubling."""
        return self.config.recover_after_s * self._backoff

    def hold(self) -> None:
        """The worker cannot make progress for another reason: keep the factor, forget the
        throughput measured so far and any calm period under way."""
        self._history.clear()
        self._calm_since = None

    def observe(self, lag: int, consumed: int) -> Step:
        """One measurement: ``lag`` records behind, ``consumed`` records committed so far (a
        running total: only its differences matter)."""
        now = self._clock()
        window = self.config.window_s
        history = self._history
        history.append((now, consumed, lag))
        while len(history) > 2 and history[1][0] <= now - window:
            history.popleft()  # keep one point at or before the window's start
        start, first, _ = history[0]
        if now - start < window:
            return Step(self._factor, False, lag, None, None)
        busy_s, busy_n = 0.0, 0
        for (t0, c0, lag0), (t1, c1, _) in itertools.pairwise(history):
            if lag0 > 0 and lag0 >= c1 - c0:  # records waited throughout: full speed
                busy_s, busy_n = busy_s + t1 - t0, busy_n + max(c1 - c0, 0)
        saturated = busy_s >= window / 3
        # mostly keeping up: what it consumed is what arrived, not what it can do
        overall = max(consumed - first, 0) / (now - start)
        throughput = busy_n / busy_s if saturated else overall
        lag_s = lag / throughput if throughput > 0 else (math.inf if lag > 0 else 0.0)
        changed = self._decide(now, lag_s, saturated)
        return Step(self._factor, changed, lag, throughput, lag_s)

    def _decide(self, now: float, lag_s: float, saturated: bool) -> bool:
        config = self.config
        bound = config.max_lag_s
        settled = now - self._last_change >= config.window_s
        if lag_s > bound:
            self._calm_since = None
            if not saturated or not settled or self._factor <= config.min_load_factor:
                return False
            if (
                self._last_was_rise
                and now - self._last_change < config.window_s + self.recover_wait_s
            ):
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)  # the last doubling failed
            self._change(now, max(self._factor / 2, config.min_load_factor), rise=False)
            return True
        if lag_s >= config.recover_share * bound:
            self._calm_since = None  # within the band: hold
            return False
        if self._calm_since is None:
            self._calm_since = now
        if self._factor >= 1.0 or not settled or now - self._calm_since < self.recover_wait_s:
            return False
        if self._last_was_rise:
            self._backoff = 1.0  # the last doubling held
        self._change(now, min(self._factor * 2, 1.0), rise=True)
        self._calm_since = now
        return True

    def _change(self, now: float, factor: float, *, rise: bool) -> None:
        self._factor = factor
        self._last_change = now
        self._last_was_rise = rise


class CommitProgress:
    """Records committed so far, summed over partitions from successive committed offsets.

    A partition counts from the second time it is seen (a partition assigned anew contributes
    nothing for the records committed before), and an offset that went back (a reset) counts 0.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], int] = {}
        self.total = 0

    def update(self, committed: Mapping[tuple[str, int], int]) -> int:
        for key, offset in committed.items():
            before = self._last.get(key)
            if before is not None and offset > before:
                self.total += offset - before
        self._last = dict(committed)
        return self.total


class LoadShedding:
    """What the worker calls after each lag measurement: the control, applied to the sampler.

    ``report`` is given the sampling rate in effect after each measurement (the gauge); each
    change of that rate is logged with the lag behind it. Without ``control`` (overload control
    off) only the rate is reported: the sampler's cap still moves it.
    """

    def __init__(
        self,
        control: OverloadControl | None,
        sampler: Sampler,
        report: Callable[[float], None] | None = None,
    ) -> None:
        self.control = control
        self.sampler = sampler
        self._report = report
        self._progress = CommitProgress()
        self._rate = sampler.rate

    def update(self, offsets: Offsets) -> Step | None:
        """Feed one measurement of ``(end, committed)`` offsets per partition."""
        if self.control is None:
            self._publish(None)
            return None
        lag = sum(max(end - committed, 0) for end, committed in offsets.values())
        consumed = self._progress.update({key: c for key, (_, c) in offsets.items()})
        step = self.control.observe(lag, consumed)
        if step.changed:
            self.sampler.set_load_factor(step.factor)
        self._publish(step)
        return step

    def hold(self) -> None:
        if self.control is not None:
            self.control.hold()
        self._publish(None)

    def _publish(self, step: Step | None) -> None:
        rate = self.sampler.rate
        if rate != self._rate:
            if step is not None and step.lag_s is not None:
                log.info("sampling rate now %.4g (was %.4g): lag %d records, %.0fs at %.1f "
                         "records/s; load factor %.4g", rate, self._rate, step.lag, step.lag_s,
                         step.throughput or 0.0, self.sampler.load_factor)  # fmt: skip
            else:
                log.info("sampling rate now %.4g (was %.4g)", rate, self._rate)
            self._rate = rate
        if self._report is not None:
            self._report(rate)


def load_shedding(
    sampler: Sampler | None,
    config: OverloadConfig | None,
    report: Callable[[float], None] | None = None,
) -> LoadShedding | None:
    """The overload control of ``sampler`` when ``config`` enables it; with it off, only the
    reporting of the sampler's rate to ``report`` (the gauge); None without a sampler, or with
    neither."""
    if sampler is None:
        return None
    if report is not None:
        report(sampler.rate)
    if config is None or not config.enabled:
        return None if report is None else LoadShedding(None, sampler, report)
    log.info("overload control on: the sampling rate halves past %.0fs of consumer lag (down "
             "to %.4g of the configured rate)", config.max_lag_s,
             config.min_load_factor)  # fmt: skip
    return LoadShedding(OverloadControl(config), sampler, report)
