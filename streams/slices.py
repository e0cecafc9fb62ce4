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

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage import OTHER_SLICE, SLICE_VALUE_CHARS
from streams.events import GenerationEvent
from streams.settings import comma_list

__all__ = ["OTHER", "UNSET", "SliceConfig", "Slicer"]

OTHER = OTHER_SLICE
UNSET = ""
ALWAYS = ("app",)
MAX_VALUE_CHARS = SLICE_VALUE_CHARS  # a slice value is a label, not a payload


class SliceConfig(BaseModel):
    """Which keys are sliced and how many values each may have (``app`` always, first).

    A plain model: :mod:`telltale.settings` binds it to ``TELLTALE_SLICE_*``.
    """

    model_config = ConfigDict(frozen=True)

    keys: tuple[str, ...] = Field(
        default=ALWAYS, description="comma-separated attribute keys to slice rates by"
    )
    max_values: int = Field(
        default=50, ge=1, le=10_000, description="values kept per key; the rest are 'other'"
    )

    @field_validator("keys", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("keys")
    @classmethod
    def _app_always_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*ALWAYS, *(k.strip() for k in value if k.strip()))))


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
