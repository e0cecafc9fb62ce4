"""The naive baseline: a fixed-sample two-proportion z-test, re-run every minute.

This is what a dashboard alert rule such as "page if the new version's failure rate is
significantly higher, p < 0.01" does when it is evaluated every minute. Each single look has level
``alpha``, but the looks are many and correlated, and the chance that *some* look crosses grows
without bound as monitoring goes on (the law of the iterated logarithm). It is kept only as the
comparison the benchmark and tests measure :class:`~alerts.release_spike.ReleaseSpikeDetector`
against; do not alert with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

from alerts.base import Detection

__all__ = ["FixedHorizonZTest", "ZTestState", "two_proportion_z_test"]


def two_proportion_z_test(n_new: int, k_new: int, n_base: int, k_base: int) -> tuple[float, float]:
    """One-sided pooled two-proportion z-test of "new fails more often than base": ``(z, p)``.

    Returns ``(0.0, 1.0)`` while the test is undefined (an empty side, or a pooled rate of 0 or 1).

    >>> z, p = two_proportion_z_test(1000, 40, 1000, 20)
    >>> round(z, 2), p < 0.01
    (2.62, True)
    """
    for n, k in ((n_new, k_new), (n_base, k_base)):
        if n < 0 or k < 0 or k > n:
            raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
    if n_new == 0 or n_base == 0:
        return 0.0, 1.0
    pooled = (k_new + k_base) / (n_new + n_base)
    variance = pooled * (1.0 - pooled) * (1.0 / n_new + 1.0 / n_base)
    if variance <= 0.0:
        return 0.0, 1.0
    z = (k_new / n_new - k_base / n_base) / math.sqrt(variance)
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class ZTestState:
    """Snapshot after one look; counts are running totals. ``fired`` latches at the first look
    with ``p_value < alpha``, as a page would."""

    minutes: int
    n_new: int
    k_new: int
    n_base: int
    k_base: int
    z: float
    p_value: float
    fired: bool
    effect: float | None


class FixedHorizonZTest:
    """Two-proportion z-test on running totals, looked at after every minute's counts.

    :meth:`update` takes the same per-minute increments as
    :meth:`~alerts.release_spike.ReleaseSpikeDetector.update`.
    """

    name = "fixed_horizon_z"

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        self._totals = [0, 0, 0, 0]
        self._minutes = 0
        self._fired = False
        self._opened_now = False
        self._state = ZTestState(0, 0, 0, 0, 0, 0.0, 1.0, False, None)

    @property
    def state(self) -> ZTestState:
        return self._state

    def update(self, n_new: int, k_new: int, n_base: int, k_base: int) -> ZTestState:
        """Add one minute of counts (increments) and re-run the test on the running totals."""
        totals = [a + b for a, b in zip(self._totals, (n_new, k_new, n_base, k_base), strict=True)]
        for n, k in ((n_new, k_new), (n_base, k_base)):
            if n < 0 or k < 0 or k > n:
                raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
        self._totals = totals
        self._minutes += 1
        z, p = two_proportion_z_test(*totals)
        was_fired = self._fired
        self._fired = self._fired or p < self.alpha
        self._opened_now = self._fired and not was_fired
        n1, k1, n2, k2 = totals
        effect = k1 / n1 - k2 / n2 if n1 and n2 else None
        self._state = ZTestState(self._minutes, n1, k1, n2, k2, z, p, self._fired, effect)
        return self._state

    def detection(self, key: str, at: datetime) -> Detection | None:
        if not self._opened_now:
            return None
        s = self._state
        return Detection(
            detector=self.name,
            key=key,
            opened_at=at,
            statistic=s.z,
            threshold=NormalDist().inv_cdf(1.0 - self.alpha),
            p_value=s.p_value,
            effect=s.effect,
            details={"minutes": s.minutes, "n_new": s.n_new, "n_base": s.n_base},
        )
