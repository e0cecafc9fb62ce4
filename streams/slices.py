"""Slice values of an event, with a cardinality cap (the top values of each key plus ``other``).

Slice keys name ``attributes`` entries (``locale``, ``customer_tier``, ``prompt_template``); the
key ``app`` is always sliced and reads the event's ``app`` field. An event without the attribute
has the empty value (shown as ``(unset)``).

Why a cap: a key such as ``user_id`` put in ``TELLTALE_SLICE_KEYS`` by mistake would otherwise
create one rate row per user per minute. Each key admits at most ``max_values`` distinct values;
later values become ``other``. The admitted set starts from the key's most frequent stored
values (:func:`storage.slices.top_slice_values`), so a restarted worker keeps the same top values,
and new values are admitted while there is room. Several workers each hold their own set, so
the stored values of one key are bounded by ``workers x max_values`` (equal in practice, since
all start from the same top values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streams.events import GenerationEvent

__all__ = ["OTHER", "UNSET", "SliceConfig", "Slicer"]

OTHER = "other"
UNSET = ""
ALWAYS = ("app",)
MAX_VALUE_CHARS = 200  # a slice value is a label, not a payload


@dataclass(frozen=True)
class SliceConfig:
    """Which keys are sliced and how many values each may have."""

    keys: tuple[str, ...] = ()
    max_values: int = 50

    def __post_init__(self) -> None:
        if self.max_values < 1:
            raise ValueError("max_values must be at least 1")
        keys = tuple(dict.fromkeys((*ALWAYS, *(k.strip() for k in self.keys if k.strip()))))
        object.__setattr__(self, "keys", keys)


class Slicer:
    """Maps an event to its capped slice values (``{key: value}``), one per configured key."""

    def __init__(
        self, config: SliceConfig, known: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.config = config
        self._admitted: dict[str, set[str]] = {key: set() for key in config.keys}
        for key, values in (known or {}).items():
            if key in self._admitted:
                for value in values:
                    self._admit(key, value)

    def _admit(self, key: str, value: str) -> str:
        admitted = self._admitted[key]
        if value in admitted or value in (UNSET, OTHER):
            return value
        if len(admitted) < self.config.max_values:
            admitted.add(value)
            return value
        return OTHER

    def values(self, event: GenerationEvent) -> dict[str, str]:
        """The event's slice values, capped."""
        return self.values_of(event.app, event.attributes)

    def values_of(self, app: str, attributes: Mapping[str, str]) -> dict[str, str]:
        """Slice values from an event's ``app`` and ``attributes`` (stored events: back-fill)."""
        out = {}
        for key in self.config.keys:
            raw = app if key == "app" else attributes.get(key, UNSET)
            out[key] = self._admit(key, (raw or UNSET)[:MAX_VALUE_CHARS])
        return out
