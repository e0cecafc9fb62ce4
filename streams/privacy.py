"""What of an event's content is stored: raw, redacted or dropped, per field.

Signals score the raw content in memory (embeddings are computed from it, pattern and PII
signals read it); the policy decides what reaches storage and what is forwarded: the
``events`` rows (prompt text, output text, free-text attribute values), the slice values on
score rows, feedback comments, the dead-letter payload and the replay's reject file.

* ``raw``: stored as sent;
* ``redacted``: personal data replaced by typed placeholders (:class:`signals.Redactor`);
* ``drop``: not stored (an empty string).

Attribute values are free text too: every key not in ``raw_attribute_keys`` (``locale``,
``customer_tier``, ...: the operator's allow-list) gets the ``attributes`` policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["ContentPolicy", "Treatment"]

Treatment = Literal["raw", "redacted", "drop"]


@dataclass(frozen=True)
class ContentPolicy:
    """How each kind of content is stored; ``redact`` does the redacting."""

    prompt_text: Treatment = "raw"
    output_text: Treatment = "raw"
    attributes: Treatment = "raw"
    raw_attribute_keys: frozenset[str] = frozenset()
    redact: Callable[[str], str] | None = None
    store_windows: bool = True  # False: a long text keeps its document vector only

    def __post_init__(self) -> None:
        wanted = "redacted" in (self.prompt_text, self.output_text, self.attributes)
        if wanted and self.redact is None:
            raise ValueError("a 'redacted' policy needs a redactor")

    @property
    def is_raw(self) -> bool:
        return self.prompt_text == self.output_text == self.attributes == "raw"

    def apply(self, treatment: Treatment, text: str) -> str:
        """``text`` as ``treatment`` stores it."""
        if treatment == "raw" or not text:
            return text
        if treatment == "drop":
            return ""
        assert self.redact is not None
        return self.redact(text)

    def prompt(self, text: str) -> str:
        return self.apply(self.prompt_text, text)

    def output(self, text: str) -> str:
        return self.apply(self.output_text, text)

    def image_reference(self, reference: str) -> str:
        """An image URL or path as stored under the answer's policy. ``redacted`` keeps the place
        (scheme, host, path with personal data redacted) and drops the credentials, the query
        and the fragment, where signed URLs carry their keys and applications put user ids."""
        if self.output_text == "raw" or not reference:
            return reference
        if self.output_text == "drop":
            return ""
        assert self.redact is not None
        parts = urlsplit(reference)
        host = parts.netloc.rpartition("@")[2]  # user:password@ is a credential, not a place
        # The scheme stays out of what is redacted: its ':' would send every URL through
        # Presidio (the redactor's cheap pre-check reads a ':' as a possible IPv6 address).
        place = self.redact(f"{host}{parts.path}" if host else parts.path)
        return f"{parts.scheme}://{place}" if host else parts._replace(
            path=place, query="", fragment="").geturl()  # fmt: skip

    def free_text(self, text: str) -> str:
        """Text that may hold anything (a dead letter, a rejected line, a feedback comment):
        redacted unless every content field is stored raw, dropped if any is dropped."""
        if self.is_raw:
            return text
        if "drop" in (self.prompt_text, self.output_text, self.attributes):
            return ""
        assert self.redact is not None
        return self.redact(text)

    def attribute_values(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """``attributes`` with every value of a key not allow-listed stored as the policy says
        (a dropped value is left out)."""
        if self.attributes == "raw":
            return dict(attributes)
        kept: dict[str, Any] = {}
        for key, value in attributes.items():
            if key in self.raw_attribute_keys or not isinstance(value, str):
                kept[key] = value
            elif self.attributes == "redacted":
                kept[key] = self.apply("redacted", value)
        return kept
