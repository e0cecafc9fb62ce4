"""Dead-letter records: the original payload, where it came from, and why it was refused."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

__all__ = ["DeadLetter"]


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    payload: str
    payload_encoding: str  # "utf-8" or "base64" when the payload was not valid UTF-8
    topic: str
    partition: int
    offset: int
    failed_at: str

    @classmethod
    def of(cls, raw: bytes, reason: str, topic: str, partition: int, offset: int) -> DeadLetter:
        try:
            payload, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(
            reason=reason, payload=payload, payload_encoding=encoding, topic=topic,
            partition=partition, offset=offset, failed_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip

    def original(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        return cls(**json.loads(data))
