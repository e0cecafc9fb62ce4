"""The contract every detector keeps (``alerts.detectors.Detector``), as checks a new detector
can be run through: ``check_detector(case)`` raises AssertionError naming the broken rule.

A :class:`DetectorCase` says how to build the detector and feed it: a quiet stream, a stream
with a planted change, and one invalid observation. The rules, in the spirit of river's
``check_estimator``: the detector follows the protocol under its stored name; it is
deterministic given its constructor; an invalid observation raises ``ValueError`` and changes
nothing; ``reset()`` forgets everything; a detection is only read off an update that fired,
names the detector and the key and is in UTC; the quiet stream opens no alarm and the planted
change opens at least one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.detectors import Detector

Call = tuple[tuple[Any, ...], dict[str, Any]]
STORED_NAMES = frozenset({"release_spike", "degradation", "prompt_drift"})
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class DetectorCase:
    name: str
    make: Callable[[], Any]
    quiet: Sequence[Call]
    change: Sequence[Call]
    invalid: Call
    fired: Callable[[Any], bool] = lambda state: bool(state.fired)

    def at(self, i: int) -> datetime:
        return T0 + timedelta(minutes=i)


def _run(detector: Any, calls: Sequence[Call], case: DetectorCase) -> list[tuple[Any, Any]]:
    out = []
    for i, (args, kwargs) in enumerate(calls):
        state = detector.update(*args, **kwargs)
        out.append((state, detector.detection("series", case.at(i))))
    return out


def _same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b)  # states hold floats and arrays; their reprs are exact


def check_detector(case: DetectorCase) -> None:
    """Run every rule of the contract over ``case``; AssertionError names the first broken."""
    det = case.make()
    assert isinstance(det, Detector), f"{case.name}: not a Detector (protocol attributes)"
    assert det.name in STORED_NAMES, f"{case.name}: name {det.name!r} is not a stored name"

    stream = [*case.quiet, *case.change]
    first, second = _run(case.make(), stream, case), _run(case.make(), stream, case)
    assert _same(first, second), f"{case.name}: not deterministic given its constructor"

    twin, probed = case.make(), case.make()
    half = len(case.quiet) // 2
    _run(twin, case.quiet[:half], case)
    _run(probed, case.quiet[:half], case)
    before = repr(getattr(probed, "state", None))
    args, kwargs = case.invalid
    try:
        probed.update(*args, **kwargs)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{case.name}: invalid observation {args} accepted")
    assert repr(getattr(probed, "state", None)) == before, (
        f"{case.name}: invalid input changed state"
    )
    rest = [*case.quiet[half:], *case.change]
    assert _same(_run(twin, rest, case), _run(probed, rest, case)), (
        f"{case.name}: an invalid observation left a trace in later results"
    )

    used = case.make()
    _run(used, stream, case)
    used.reset()
    assert _same(_run(used, stream, case), first), f"{case.name}: reset() did not forget"

    for i, (state, detection) in enumerate(first):
        if detection is None:
            continue
        assert case.fired(state), f"{case.name}: a detection read off an update that did not fire"
        assert detection.detector == det.name and detection.key == "series", case.name
        assert detection.opened_at == case.at(i) and detection.opened_at.tzinfo is UTC, case.name
    quiet_alarms = sum(d is not None for _, d in first[: len(case.quiet)])
    assert quiet_alarms == 0, f"{case.name}: {quiet_alarms} alarm(s) on the quiet stream"
    assert any(d is not None for _, d in first[len(case.quiet) :]), (
        f"{case.name}: the planted change opened no alarm"
    )
