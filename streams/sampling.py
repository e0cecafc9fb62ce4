"""Which events are embedded and scored: a deterministic sample keyed on the independent unit.

Every event is counted (volume, latency, tokens); only a sample is embedded and scored. An event
is in the sample when the draw of its unit, a hash of the user id (else the session id, else the
event id) in [0, 1), is below the event's inclusion probability. So the same person is in or out
together, a retry of one event lands where the event did, and samples are nested: a unit drawn
at probability p is drawn at every probability above p too.

The inclusion probability of an event is the configured rate (``SamplingConfig.rate``), capped
by ``max_events_per_s``, times the load factor the overload control sets
(:meth:`Sampler.set_load_factor`), and raised for small model versions: a version seen fewer than
``version_floor_per_min`` times a minute (a new release, a low-traffic product) is scored with
the probability that keeps about that many of its events a minute, up to all of them. The
probability is known when the event is decided and is stored with its scores, so rates are
Horvitz–Thompson estimates (:mod:`storage` reads it back); volumes come from the events seen in
the last full minute, per version, as this worker received them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.events import GenerationEvent

__all__ = ["Sampler", "SamplingConfig", "unit_draw", "unit_key"]

_DRAW_SCALE = float(2**64)


def unit_key(event: GenerationEvent) -> str:
    """The independent unit of an event: its user, else its session, else the event itself."""
    if event.user_id:
        return f"user:{event.user_id}"
    if event.session_id:
        return f"session:{event.session_id}"
    return f"event:{event.event_id}"


def unit_draw(key: str, salt: str = "") -> float:
    """A uniform draw in [0, 1) that depends only on ``key`` and ``salt``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"telltale-sample",
                             salt=salt.encode()[:16]).digest()  # fmt: skip
    return int.from_bytes(digest, "big") / _DRAW_SCALE


class SamplingConfig(BaseModel):
    """What share of events is scored. ``rate`` 1 with no cap: every event (the default).

    :mod:`telltale.settings` binds it to ``TELLTALE_SAMPLE_*``."""

    model_config = ConfigDict(frozen=True)

    rate: float = Field(
        default=1.0, description="inclusion probability of an event's unit, in (0, 1]"
    )
    max_events_per_s: float = Field(
        default=0.0, description="cap on the events scored per second by one worker (0: none)"
    )
    version_floor_per_min: float = Field(
        default=30.0,
        description="a model version is scored at least this often a minute, up to all of its "
        "events",
    )
    salt: str = Field(
        default="",
        description="changes which units are drawn (the same salt on every worker keeps them "
        "consistent)",
    )

    @model_validator(mode="after")
    def _check(self) -> SamplingConfig:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"sampling rate {self.rate} is not within (0, 1]")
        if self.max_events_per_s < 0 or self.version_floor_per_min < 0:
            raise ValueError("max_events_per_s and version_floor_per_min must not be negative")
        return self

    @property
    def samples(self) -> bool:
        return self.rate < 1.0 or self.max_events_per_s > 0


class Sampler:
    """Decides inclusion probabilities batch by batch; thread-safe.

    :meth:`probabilities` is called on the pipeline thread; :meth:`set_load_factor` by the
    overload control on the event loop. ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(self, config: SamplingConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._load_factor = 1.0
        self._minute = -1
        self._seen: Counter[tuple[str, str]] = Counter()  # this minute, per (model, version)
        self._last: Counter[tuple[str, str]] = Counter()  # the last full minute

    @property
    def load_factor(self) -> float:
        return self._load_factor

    def set_load_factor(self, factor: float) -> None:
        """The share of the configured rate in effect (the overload control lowers it)."""
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"load factor {factor} is not within (0, 1]")
        self._load_factor = factor

    @property
    def rate(self) -> float:
        """The base inclusion probability now (before the per-version floor)."""
        rate = self.config.rate
        cap = self.config.max_events_per_s
        if cap > 0:
            per_s = sum(self._last.values()) / 60.0
            if per_s > cap:
                rate = min(rate, cap / per_s)
        return rate * self._load_factor

    def probabilities(self, events: Sequence[GenerationEvent]) -> list[float]:
        """The inclusion probability of each event (1.0 when nothing is sampled)."""
        with self._lock:
            self._count(events)
            return self._probabilities(events)

    def likely_drawn(self, events: Sequence[GenerationEvent]) -> list[bool]:
        """Whether each event would be drawn now, without counting it (read-only): what the
        worker embeds ahead (:mod:`signals.ahead`). A guess, not the draw: the volumes it
        reads may change before the batch is processed."""
        with self._lock:
            probabilities = self._probabilities(events)
        return [self.in_sample(e, p) for e, p in zip(events, probabilities, strict=True)]

    def _probabilities(self, events: Sequence[GenerationEvent]) -> list[float]:
        if not self.config.samples and self._load_factor >= 1.0:
            return [1.0] * len(events)
        base = self.rate
        floor = self.config.version_floor_per_min
        out: list[float] = []
        for event in events:
            key = (event.model, event.model_version)
            volume = max(self._last[key], self._seen[key])
            p = base if volume * base >= floor else min(1.0, floor / max(volume, 1))
            out.append(max(p, base))
        return out

    def in_sample(self, event: GenerationEvent, probability: float) -> bool:
        """Whether ``event`` is scored at ``probability`` (deterministic per unit)."""
        return probability >= 1.0 or unit_draw(unit_key(event), self.config.salt) < probability

    def _count(self, events: Sequence[GenerationEvent]) -> None:
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._last = self._seen if minute == self._minute + 1 else Counter()
            self._seen = Counter()
            self._minute = minute
        self._seen.update((e.model, e.model_version) for e in events)
