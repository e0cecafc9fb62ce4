"""Every detector the monitor runs passes the detector contract
(``detector_contract.check_detector``), and a deliberately broken one fails it."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pytest
from detector_contract import DetectorCase, check_detector

from alerts.detectors import PromptDriftDetector, ReleaseSpikeDetector, SeasonalCusum


def _release_spike() -> DetectorCase:
    rng = random.Random(3)

    def bucket(p_new: float) -> tuple[tuple[int, int, int, int], dict[str, Any]]:
        k_new = sum(rng.random() < p_new for _ in range(60))
        k_base = sum(rng.random() < 0.05 for _ in range(60))
        return (60, k_new, 60, k_base), {}

    quiet = [bucket(0.05) for _ in range(40)]
    change = [bucket(0.30) for _ in range(20)]
    return DetectorCase("release_spike", ReleaseSpikeDetector, quiet, change,
                        ((10, 11, 10, 0), {}))  # fmt: skip


def _degradation() -> DetectorCase:
    rng = random.Random(4)
    case = DetectorCase("degradation", lambda: SeasonalCusum(min_history_minutes=600,
                                                             refit_minutes=600), [], [],
                        ((5, -1, None), {}))  # fmt: skip

    def minute(i: int, p: float) -> tuple[tuple[int, int, Any], dict[str, Any]]:
        return (40, sum(rng.random() < p for _ in range(40)), case.at(i)), {}

    quiet = [minute(i, 0.05) for i in range(900)]
    change = [minute(900 + i, 0.25) for i in range(120)]
    return DetectorCase(case.name, case.make, quiet, change,
                        ((5, 6, case.at(1020)), {}))  # fmt: skip


def _prompt_drift() -> DetectorCase:
    rng = np.random.default_rng(5)

    def look(shift: float) -> tuple[tuple[Any, Any], dict[str, Any]]:
        reference = rng.normal(0.0, 1.0, (60, 8))
        recent = rng.normal(shift, 1.0, (60, 8))
        return (reference, recent), {}

    return DetectorCase(
        "prompt_drift",
        lambda: PromptDriftDetector(n_permutations=999, horizon_looks=4, explain_clusters=2),
        [look(0.0) for _ in range(4)], [look(1.5) for _ in range(2)],
        ((np.zeros((5, 8)), np.zeros((5, 3))), {}),
    )  # fmt: skip


CASES = [_release_spike(), _degradation(), _prompt_drift()]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_monitored_detector_keeps_the_contract(case: DetectorCase) -> None:
    check_detector(case)


class _ForgetfulSpike(ReleaseSpikeDetector):
    """A bug a new detector could have: reset() keeps the evidence gathered so far."""

    def reset(self) -> None:
        if not hasattr(self, "_closed"):
            super().reset()


_CALLS = itertools.count()


class _SharedStateSpike(ReleaseSpikeDetector):
    """Another: state kept outside the instance (a module-level counter, like an unseeded
    random generator), so two detectors fed the same stream disagree."""

    def update(self, *args: Any, **kwargs: Any) -> Any:
        state = super().update(*args, **kwargs)
        self._opened_now = self._opened_now or next(_CALLS) % 7 == 0
        return state


@pytest.mark.parametrize(("broken", "rule"), [(_ForgetfulSpike, "reset"),
                                              (_SharedStateSpike, "deterministic")])  # fmt: skip
def test_a_broken_detector_fails_the_contract(broken: type, rule: str) -> None:
    case = _release_spike()
    with pytest.raises(AssertionError, match=rule):
        check_detector(DetectorCase(case.name, broken, case.quiet, case.change, case.invalid))
