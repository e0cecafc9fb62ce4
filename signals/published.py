"""A fitted signal as published to running workers over the control topic."""

from __future__ import annotations

import json
from dataclasses import dataclass

from signals.fitted import FittedSignal

__all__ = ["PublishedSignal"]


@dataclass(frozen=True)
class PublishedSignal:
    """A fitted signal sent to running workers (``telltale signals add --publish``); the
    worker that reads it stores it as the next version."""

    fitted: FittedSignal
    author: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {"fitted": self.fitted.model_dump(mode="json"), "author": self.author}
        ).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> PublishedSignal:
        data = json.loads(payload)
        return cls(FittedSignal.model_validate(data["fitted"]), str(data.get("author", "")))
