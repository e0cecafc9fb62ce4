"""Signal groups: a metric hierarchy with one decision metric on top.

A group names several signals and is *flagged* for an event when any member flags it (its score
is the largest member score). It is written as one more score row per event, with the group's
name as the signal, so it gets a failure rate, dashboard series, release test and slices like
any signal, with no special case downstream. Groups are written in YAML:

.. code-block:: yaml

    groups:
      safety-critical:
        members: [stock_advice, pii_leak, jailbreak]
        severity: critical          # critical | error | warning | info (paging severity)
        description: Anything that must never reach a user.

A group's rows carry ``signal_version`` = a checksum of its sorted members, so redefining a group
starts a new version instead of mixing two definitions under one.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from signals.errors import SpecError

__all__ = ["GroupScore", "SignalGroup", "apply_groups", "load_groups", "parse_groups"]

Severity = Literal["critical", "error", "warning", "info"]

GroupScore = tuple[float, bool]
"""``(score, flagged)`` of one signal for one event."""


class SignalGroup(BaseModel):
    """A named set of signals, flagged when any member flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    members: tuple[str, ...] = Field(min_length=1)
    severity: Severity = "error"
    description: str = ""

    @field_validator("members")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("members must be distinct")
        return tuple(sorted(value))

    @property
    def version(self) -> int:
        """A stable checksum of the members (a new definition is a new version)."""
        return zlib.crc32(",".join(self.members).encode())


def parse_groups(data: Any) -> tuple[SignalGroup, ...]:
    """Groups from parsed YAML (``{"groups": {name: {members: [...], ...}}}``).

    A group may not contain another group or itself, and names must be unique.
    """
    if data is None:
        return ()
    if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
        raise SpecError("a groups file must be a mapping with a 'groups' mapping")
    groups = []
    for name, body in data["groups"].items():
        fields = {"members": body} if isinstance(body, list) else body
        if not isinstance(fields, dict):
            raise SpecError(f"group {name!r}: expected a list of members or a mapping")
        try:
            groups.append(SignalGroup(name=str(name), **fields))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'group'}: {e['msg']}" for e in exc.errors()
            )
            raise SpecError(f"group {name!r}: {problems}") from exc
    names = {g.name for g in groups}
    for group in groups:
        nested = names.intersection(group.members)
        if nested:
            raise SpecError(f"group {group.name!r} contains groups {sorted(nested)}: not allowed")
    return tuple(groups)


def load_groups(path: Path | str) -> tuple[SignalGroup, ...]:
    """Groups from a YAML file; raises :class:`SpecError` with the reason if it is invalid."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read signal groups from {path}: {exc}") from exc
    return parse_groups(data)


def apply_groups(
    groups: Iterable[SignalGroup], scores: Mapping[str, GroupScore]
) -> dict[str, GroupScore]:
    """The groups' ``(score, flagged)`` for one event from its members' scores.

    A group is scored when at least one member was (members on other fields, or not yet
    trained, are simply absent); it is flagged when any scored member is.

    >>> g = SignalGroup(name="safety", members=("a", "b"))
    >>> apply_groups([g], {"a": (0.2, False), "b": (0.9, True)})
    {'safety': (0.9, True)}
    """
    out = {}
    for group in groups:
        present = [scores[m] for m in group.members if m in scores]
        if present:
            out[group.name] = (max(s for s, _ in present), any(f for _, f in present))
    return out
