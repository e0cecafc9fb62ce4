"""The one check every count-based detector applies to its input."""

from __future__ import annotations

__all__ = ["check_counts"]


def check_counts(n: int, k: int) -> None:
    """Raise :class:`ValueError` unless ``0 <= k <= n`` (``k`` failures among ``n`` events)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"counts must satisfy 0 <= k <= n, got n={n}, k={k}")
