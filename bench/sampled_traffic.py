"""Simulated traffic thinned the way the worker samples it (:mod:`streams.sampling`).

An :class:`Arm` is one model version's traffic: units per minute (after the monitor's collapse of
repeats), each belonging to a user of a population with heavy-tailed activity (users come back
many times), plus retry storms (one user re-sending one failing request 15-40 times). The worker
sees every event; it scores an event when ``unit_draw(unit_key) < p``, where ``p`` is the
version's inclusion probability in that minute, set as :meth:`streams.sampling.Sampler.
probabilities` sets it: the configured rate, raised by the per-version floor when the version's
volume (every event, storm copies included, of this minute or the last) times the rate is below
the floor. :meth:`Arm.thin` returns the per-minute counts of *scored* units, which is what the
detectors read; with rate 1 they are the unthinned counts.

Which units fail is independent of their users (the traffic generators draw failures per minute),
so the failures of a minute are its first ``k`` units and the users are shuffled among them.
Draws are per user key, so samples are nested across rates, as in the worker.
:func:`concurrent_arms`, :func:`cutover_arms` and :func:`cusum_arm` wrap the traffic-realism
benches' generators (their storms re-drawn as sticky users) and rebuild their inputs at any rate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

from bench.alerts_traffic_cusum_drift import (  # noqa: E402
    MINUTES_PER_DAY,
    Traffic,
    simulate_counts,
)
from bench.alerts_traffic_release import Config, Stream, concurrent, cutover  # noqa: E402
from streams.sampling import unit_draw  # noqa: E402

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]

HISTORY_START = datetime(2026, 11, 3, tzinfo=UTC)  # concurrent(): the baseline's day alone
UNITS_PER_USER = 20.0
"""Mean units a user sends over a simulated run (activity is log-normal, sigma 1.5) ..."""
MAX_USERS = 20_000
"""... up to this many users an arm (more units a user on long runs; hashing costs)."""


def inclusion(volume: Floats | Ints, rate: float, floor: float) -> Floats:
    """Per-minute inclusion probability of one version, as ``Sampler.probabilities`` sets it
    (no events/s cap, load factor 1): ``volume`` is the version's events per minute."""
    v = np.asarray(volume, dtype=np.float64)
    if rate >= 1.0:
        return np.ones_like(v)
    seen = np.maximum(v, np.concatenate(([0.0], v[:-1])))  # max(last full minute, this one)
    raised = np.minimum(1.0, floor / np.maximum(seen, 1.0))
    p = np.where(seen * rate >= floor, rate, raised)
    result: Floats = np.maximum(p, rate)
    return result


@dataclass
class Arm:
    """One version's units per minute, their users' draws, and its retry storms."""

    n: Ints
    k: Ints
    unit_draws: Floats  # the draw of each unit's user, minute by minute
    minute: Ints  # the minute of each unit
    failed: NDArray[np.bool_]  # whether each unit failed (the first k of its minute)
    storm_minutes: list[Ints]  # per storm: the minute of each copy (first copy first)
    storm_draws: Floats
    raw_storms: bool  # count every storm copy (True) or the storm once, as the monitor does

    @property
    def volume(self) -> Ints:
        """Events per minute the worker sees: every unit and every storm copy."""
        v = self.n.copy()
        for minutes in self.storm_minutes:
            np.add.at(v, minutes, 1)
        return v

    def counts(self) -> tuple[Ints, Ints]:
        """Units and failed units per minute, every unit scored."""
        return self.thin(1.0, 0.0)[:2]

    def thin(self, rate: float, floor: float) -> tuple[Ints, Ints, Floats]:
        """Scored units and failed units per minute, and the inclusion probabilities."""
        p = inclusion(self.volume, rate, floor)
        kept = self.unit_draws < p[self.minute]
        n = np.bincount(self.minute[kept], minlength=len(self.n)).astype(np.int64)
        k = np.bincount(self.minute[kept & self.failed], minlength=len(self.n)).astype(np.int64)
        for minutes, draw in zip(self.storm_minutes, self.storm_draws, strict=True):
            scored = minutes[draw < p[minutes]]  # each copy is decided in its own minute
            for at in scored if self.raw_storms else scored[:1]:
                n[at] += 1
                k[at] += 1
        return n, k, p


def storm_minutes(
    rng: np.random.Generator, minutes: int, per_hour: float, spread: int
) -> list[Ints]:
    """Retry storms: per storm, the minutes of its 15-40 copies within ``spread`` minutes."""
    out = []
    for start in np.flatnonzero(rng.random(minutes) < per_hour / 60.0):
        count = int(rng.integers(15, 41))
        at = np.minimum(minutes - 1, start + np.sort(rng.integers(0, spread, size=count)))
        out.append(at.astype(np.int64))
    return out


def make_arm(
    rng: np.random.Generator, n: Ints, k: Ints, tag: str, *, storms: list[Ints] | None = None,
    raw_storms: bool = False,
) -> Arm:  # fmt: skip
    """An arm for counts ``n`` / ``k``: users drawn for its units, keyed ``user:{tag}/{i}``."""
    n = np.asarray(n, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    total = int(n.sum())
    users = max(1, min(MAX_USERS, round(total / UNITS_PER_USER)))
    activity = rng.lognormal(0.0, 1.5, users)
    sent = rng.multinomial(total, activity / activity.sum())
    owner = rng.permutation(np.repeat(np.arange(users), sent))  # users in random order
    draws = np.array([unit_draw(f"user:{tag}/{i}") for i in range(users)])
    minute = np.repeat(np.arange(len(n)), n)
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    failed = np.arange(total) - starts[minute] < k[minute]
    storms = storms or []
    storm_draws = np.array([unit_draw(f"user:{tag}/storm{i}") for i in range(len(storms))])
    return Arm(n, k, draws[owner], minute, failed, storms, storm_draws, raw_storms)


# -- the traffic-realism benches' traffic, as arms ------------------------------------------

Assemble = Callable[[float, float], tuple[Stream, float, float]]


def concurrent_arms(
    cfg: Config, rng: np.random.Generator, minutes: int, tag: str, *, jump: float = 0.0,
    icc: float = 0.0, share_new: float = 0.5, total: int | None = None,
    storms_per_hour: float = 0.0,
) -> Assemble:  # fmt: skip
    """A canary beside its baseline (``concurrent()``'s traffic), storms as sticky users."""
    s = concurrent(cfg, rng, minutes, jump=jump, icc=icc, share_new=share_new, total=total)
    hist = sorted(s.history.items())
    h_n = np.array([n for _, (n, _) in hist], dtype=np.int64)
    h_k = np.array([k for _, (_, k) in hist], dtype=np.int64)
    split = len(h_n)
    storms_new: list[Ints] = []
    storms_base: list[Ints] = []
    if storms_per_hour > 0:
        storms_base += storm_minutes(rng, split, storms_per_hour, 3)
        for at in storm_minutes(rng, minutes, storms_per_hour, 3):
            if rng.random() < share_new:
                storms_new.append(at)
            else:
                storms_base.append(at + split)
    new = make_arm(rng, s.n_new, s.k_new, f"{tag}/new", storms=storms_new)
    base = make_arm(rng, np.concatenate([h_n, s.n_base]), np.concatenate([h_k, s.k_base]),
                    f"{tag}/base", storms=storms_base)  # fmt: skip

    def assemble(rate: float, floor: float) -> tuple[Stream, float, float]:
        n_new, k_new, p_new = new.thin(rate, floor)
        n_b, k_b, p_b = base.thin(rate, floor)
        history = {HISTORY_START + timedelta(minutes=i): (int(n_b[i]), int(k_b[i]))
                   for i in range(split) if n_b[i] > 0}  # fmt: skip
        stream = Stream(n_new, k_new, n_b[split:], k_b[split:], [None] * minutes, history)
        return stream, float(p_new.mean()), float(p_b[split:].mean())

    return assemble


def cutover_arms(cfg: Config, rng: np.random.Generator, tag: str, *, release: datetime,
                 minutes: int, history_days: int, **kw: Any) -> Assemble:  # fmt: skip
    """A full cut-over (``cutover()``'s traffic): the same users before and after the release,
    so the lagged baseline and the new version are sampled by the same draws."""
    s = cutover(cfg, rng, release=release, minutes=minutes, history_days=history_days, **kw)
    split = history_days * MINUTES_PER_DAY
    h_start = release - timedelta(days=history_days)
    n = np.zeros(split + minutes, dtype=np.int64)
    k = np.zeros(split + minutes, dtype=np.int64)
    for at, (units, failed) in s.history.items():
        i = int((at - h_start).total_seconds() // 60)
        n[i], k[i] = units, failed
    n[split:], k[split:] = s.n_new, s.k_new
    arm = make_arm(rng, n, k, tag)
    source = [None if b == ("none",) else split + i - b[1]  # type: ignore[index]
              for i, b in enumerate(s.blocks)]  # fmt: skip

    def assemble(rate: float, floor: float) -> tuple[Stream, float, float]:
        n2, k2, p = arm.thin(rate, floor)
        n_base = np.array([0 if j is None else n2[j] for j in source], dtype=np.int64)
        k_base = np.array([0 if j is None else k2[j] for j in source], dtype=np.int64)
        history = {h_start + timedelta(minutes=i): (int(n2[i]), int(k2[i]))
                   for i in range(split) if n2[i] > 0}  # fmt: skip
        stream = Stream(n2[split:], k2[split:], n_base, k_base, s.blocks, history)
        return stream, float(p[split:].mean()), float(p[:split].mean())

    return assemble


def cusum_arm(rng: np.random.Generator, law: Traffic, start: datetime, minutes: int, tag: str,
              shift: np.ndarray | None = None) -> tuple[list[datetime], Arm]:  # fmt: skip
    """``simulate_counts()``'s traffic with its storms as sticky users (spread over 5 min)."""
    ats, n, k = simulate_counts(rng, start, minutes, replace(law, storms_per_hour=0.0), shift)
    storms = storm_minutes(rng, minutes, law.storms_per_hour, 5) if law.storms_per_hour else []
    arm = make_arm(rng, n, k, tag, storms=storms, raw_storms=not law.storms_counted_once)
    return ats, arm
