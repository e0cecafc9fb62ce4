"""Adaptive buckets: consecutive minutes summed until both versions hold enough units."""

from __future__ import annotations

from dataclasses import dataclass

from alerts.detectors.dispersion import Dispersion

__all__ = ["AdaptiveBuckets", "Bucket"]


@dataclass(frozen=True)
class Bucket:
    """Counts of one closed bucket: the new version's and the baseline's over the same span."""

    n_new: int
    k_new: int
    n_base: int
    k_base: int
    block: object
    minutes: int
    squares_new: int = 0  # sum over the bucket's minutes of the squared numbers of units
    squares_base: int = 0

    def dispersion(self, new: Dispersion, base: Dispersion | None = None) -> float:
        """The bucket's variance inflation: each side's ``phi`` weighted as it enters the
        variance of the conditional count (``(m phi_new + n phi_base) / (n + m)``)."""
        base = base or new
        total = self.n_new + self.n_base
        if total == 0:
            return 1.0
        phi_new = new.phi_for(self.n_new, self.squares_new)
        phi_base = base.phi_for(self.n_base, self.squares_base)
        return (self.n_base * phi_new + self.n_new * phi_base) / total


class AdaptiveBuckets:
    """Sums consecutive minutes into buckets until both sides have ``min_events`` units.

    A bucket never spans two blocks: a minute of another block first closes the open bucket.
    Because the closing rule reads only the numbers of units (never the failures) it is a
    stopping rule the conditional test is indifferent to.

    >>> buckets = AdaptiveBuckets(min_events=5)
    >>> [b.n_new for m in range(12) for b in buckets.add(1, 0, 1, 0, block="d1")]
    [5, 5]
    """

    def __init__(self, min_events: int) -> None:
        if min_events < 1:
            raise ValueError("min_events must be at least 1")
        self.min_events = min_events
        self._open: list[int] | None = None  # n_new, k_new, n_base, k_base, minutes, squares
        self._block: object = None

    def add(
        self, n_new: int, k_new: int, n_base: int, k_base: int, *, block: object
    ) -> list[Bucket]:
        """Add one minute; return the buckets this closed (zero, one or two)."""
        closed: list[Bucket] = []
        if self._open is not None and block != self._block:
            closed.extend(self.flush())
        if self._open is None:
            self._open, self._block = [0, 0, 0, 0, 0, 0, 0], block
        for i, value in enumerate((n_new, k_new, n_base, k_base, 1, n_new**2, n_base**2)):
            self._open[i] += value
        if min(self._open[0], self._open[2]) >= self.min_events:
            closed.extend(self.flush())
        return closed

    def flush(self) -> list[Bucket]:
        """Close the open bucket (if it holds anything)."""
        if self._open is None:
            return []
        n, k, m, k_base, minutes, squares_new, squares_base = self._open
        self._open = None
        if n == 0 and m == 0:
            return []
        return [Bucket(n, k, m, k_base, self._block, minutes, squares_new, squares_base)]
