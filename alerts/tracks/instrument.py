"""What the release test says about its instrument: the hook that adds corrected levels.

The release test runs on raw flag rates: a fixed classifier turns a change in failures into a
change in flags, so the test stays valid without knowing the signal's errors. The levels on-call
reads are another matter: a fired incident asks an :class:`InstrumentCheck` (built by the
composition root from the audits, ``telltale.trust``) for the corrected failure rates before and
after, and whether the audits say the *instrument* changed (its precision on the new version
differs) rather than the product.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

__all__ = ["InstrumentCheck", "InstrumentDetails"]

log = logging.getLogger(__name__)


class InstrumentCheck(Protocol):
    def __call__(
        self, *, signal: str, version: str, baseline_version: str, n_new: int, k_new: int,
        n_base: int, k_base: int,
    ) -> dict[str, Any]:  # fmt: skip
        """JSON-ready details: corrected rates before and after, and what changed."""


class InstrumentDetails:
    """Asks the check once per fired (release, signal), at the figures it fired with; a
    failing check is logged and reported, never costs the detection."""

    def __init__(self, check: InstrumentCheck) -> None:
        self._check = check
        self._done: dict[str, dict[str, Any]] = {}

    def details(
        self, key: str, *, signal: str, version: str, baseline_version: str | None,
        counts: tuple[int, int, int, int],
    ) -> dict[str, Any]:  # fmt: skip
        """``{"instrument": {...}}`` (``counts``: n_new, k_new, n_base, k_base)."""
        if baseline_version is None:
            return {}
        if key not in self._done:
            n_new, k_new, n_base, k_base = counts
            try:
                found = self._check(
                    signal=signal, version=version, baseline_version=baseline_version,
                    n_new=n_new, k_new=k_new, n_base=n_base, k_base=k_base,
                )  # fmt: skip
                self._done[key] = {"instrument": found}
            except Exception as exc:  # a detection must never be lost to its explanation
                log.warning("instrument check of %s failed: %s: %s", key,
                            type(exc).__name__, exc)  # fmt: skip
                self._done[key] = {"instrument_error": type(exc).__name__}
        return self._done[key]
