"""Dead-letter records: the original payload, where it came from, and why it was refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

__all__ = ["MAX_RECORD_BYTES", "DeadLetter"]

MAX_RECORD_BYTES = 900_000
"""Largest serialised record: a dead letter must fit into one producer request (faust's default
``producer_max_request_size`` is 1,000,000 bytes), or sending it fails and the worker stalls on
the payload it was trying to set aside."""

MAX_REASON_CHARS = 4_000
MAX_REDACTED_CHARS = 16_000
"""Under a redaction policy a dead letter keeps the first this many characters, redacted:
enough to see what was wrong, and it bounds the redactor's work on a multi-megabyte poison
payload (16,000 characters dense with phone numbers take Presidio ~2 s; the original stays at
its topic and offset until that topic's retention)."""


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    payload: str
    payload_encoding: str  # "utf-8" or "base64" when the payload was not valid UTF-8
    topic: str
    partition: int
    offset: int
    failed_at: str
    payload_bytes: int = -1  # size of the original payload; -1 in records written before
    truncated: bool = False  # payload holds only a prefix; the original stays at topic/offset
    redacted: bool = False  # payload stored as the content policy says (not the original)

    @classmethod
    def of(
        cls,
        raw: bytes,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = MAX_RECORD_BYTES,
        redact: Callable[[str], str] | None = None,
    ) -> DeadLetter:
        """The record for ``raw``; its JSON is at most ``max_bytes`` (the payload is cut).

        ``redact`` (a content policy other than raw): the payload is stored redacted, a
        payload that is not text (protobuf) is withheld, and ``redacted`` says so; the
        original stays at its topic and offset until the topic's retention removes it."""
        if len(reason) > MAX_REASON_CHARS:
            reason = f"{reason[:MAX_REASON_CHARS]}… ({len(reason)} chars)"
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
        try:
            payload, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        size = len(raw)
        cut = False
        if redact is not None:
            cut = len(payload) > MAX_REDACTED_CHARS if encoding == "utf-8" else size > 0
            kept = payload[:MAX_REDACTED_CHARS] if encoding == "utf-8" else ""
            payload, encoding = redact(kept) if kept else "", "utf-8"
            raw = payload.encode("utf-8")  # a cut below keeps a prefix of the redacted text
        record = cls(
            reason=reason, payload=payload, payload_encoding=encoding, topic=topic,
            partition=partition, offset=offset, failed_at=datetime.now(UTC).isoformat(),
            payload_bytes=size, redacted=redact is not None, truncated=cut,
        )  # fmt: skip
        if len(record.to_json()) <= max_bytes:
            return record
        # base64 grows by 4/3 whatever the bytes are (JSON escaping of text can grow by 6):
        # keep all of the payload, or the prefix, that fits next to the other fields.
        room = max(0, max_bytes - len(record._replace_payload("").to_json()) - 64)
        keep = room * 3 // 4
        return record._replace_payload(
            base64.b64encode(raw[:keep]).decode("ascii"), truncated=len(raw) > keep
        )

    def _replace_payload(self, payload: str, truncated: bool = False) -> DeadLetter:
        fields = asdict(self)
        fields.update(payload=payload, payload_encoding="base64", truncated=truncated)
        return DeadLetter(**fields)

    def original(self) -> bytes:
        """The refused payload (only its first bytes when ``truncated``)."""
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        return cls(**json.loads(data))
