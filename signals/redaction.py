"""Redaction: the personal data Presidio's pattern recognizers find, replaced by typed
placeholders (``Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>.``).

The recognizers are the ``pii`` signal kind's (:class:`signals.matchers.PiiMatcher`: offline,
``spacy.blank("en")``, phone numbers of 10+ digits standing alone, documentation e-mail
domains left as they are). Overlapping findings are merged into one placeholder of the
entity that covers most of the span. A placeholder is what a ``pii`` signal finds in stored,
redacted text, so back-fill over redacted text counts the leaks the live signal counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from signals.matchers import PiiMatcher

__all__ = ["DEFAULT_REDACTED_ENTITIES", "Redactor"]

DEFAULT_REDACTED_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
                             "IP_ADDRESS", "US_SSN", "US_BANK_NUMBER")  # fmt: skip
"""What ``redacted`` replaces unless ``TELLTALE_PRIVACY_ENTITIES`` says otherwise."""


_PREFILTERED = frozenset(DEFAULT_REDACTED_ENTITIES)
_MIN_DIGITS = 8
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


class Redactor:
    """``Redactor(entities)(text)``: ``text`` with every finding replaced by ``<ENTITY>``."""

    def __init__(
        self, entities: Sequence[str] = DEFAULT_REDACTED_ENTITIES, min_score: float = 0.3
    ) -> None:
        self.entities = tuple(entities)
        self._prefiltered = set(self.entities) <= _PREFILTERED
        self._min_score = min_score
        self._matcher: PiiMatcher | None = None  # loaded on first use (Presidio takes ~1 s)

    def __call__(self, text: str) -> str:
        if not text or not self._may_hold_entities(text):
            return text
        if self._matcher is None:
            self._matcher = PiiMatcher(self.entities, self._min_score, "possible")
        spans: list[tuple[int, int, str]] = []
        for match in self._matcher.find(text):
            if spans and match.start < spans[-1][1]:  # overlaps the previous finding: merge
                start, end, label = spans[-1]
                wider = match.end - match.start > end - start
                spans[-1] = (start, max(end, match.end), match.label if wider else label)
            else:
                spans.append((match.start, match.end, match.label))
        if not spans:
            return text
        parts, cursor = [], 0
        for start, end, label in spans:
            parts += [text[cursor:start], f"<{label}>"]
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts)

    def _may_hold_entities(self, text: str) -> bool:
        """A cheap necessary condition, for the entities whose shape is known: an e-mail
        needs an ``@``; an IPv4 address four dotted numbers; an IPv6 one a ``:``; phone (10+
        digits), card, IBAN, SSN and bank numbers at least 8 digits. Most answers hold none of
        these and skip Presidio (10x the events/s on ``bench/privacy.py``'s replay path)."""
        if not self._prefiltered:
            return True
        if "@" in text or ":" in text or _IPV4.search(text):
            return True
        return sum(c.isdigit() for c in text) >= _MIN_DIGITS
