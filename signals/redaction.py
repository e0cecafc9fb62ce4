"""Redaction: the personal data Presidio's pattern recognizers find, replaced by typed
placeholders (``Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>.``).

The recognizers are the ``pii`` signal kind's (:class:`signals.matchers.PiiMatcher`: offline,
``spacy.blank("en")``, phone numbers of 10+ digits standing alone, documentation e-mail
domains left as they are). Overlapping findings are merged into one placeholder of the
entity that covers most of the span. Redaction errs on the side of hiding: phone numbers are
taken wherever they stand (the leak signal wants them standing alone), a number's span grows
over the digit groups it touches, ten digits in a row are hidden as ``<NUMBER>``, and a text
dense with numbers has them all hidden before Presidio runs (its cost is per candidate).
A placeholder is what a ``pii`` signal finds in stored,
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
_NUMERIC = frozenset({"PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_BANK_NUMBER"})
_NUMBER_RUN = re.compile(r"\+?\(?\d[\d \t().-]{6,}\d")
_LONG_DIGITS = re.compile(r"\d{10,}")
"""Ten digits or more without a break, wherever they stand, are hidden as ``<NUMBER>`` when a
numeric entity is redacted: a phone, account or card number the matchers did not take whole
(``4155550102-4155550103``). Dates and times never have ten digits in a row."""
_DENSE_RUNS = 40
"""A text with more runs of 8+ digits than this has them all replaced by ``<NUMBER>`` before
Presidio runs: its phone matcher costs ~2.5 ms per candidate, so a text dense with numbers
(a hostile one, or a table) would hold the worker for seconds to minutes."""
_MIN_DIGITS = 8
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6 = re.compile(r":[0-9A-Fa-f]{0,4}:")
"""Every IPv6 form Presidio finds (``1:2:3:4:5:6:7:8``, ``fe80::1``, ``::1``,
``::ffff:1.2.3.4``) has two colons with at most four hex digits between them; a lone colon
(``Question 3: ...``, ``Note: ...``) does not make a text a candidate."""


class Redactor:
    """``Redactor(entities)(text)``: ``text`` with every finding replaced by ``<ENTITY>``."""

    def __init__(
        self, entities: Sequence[str] = DEFAULT_REDACTED_ENTITIES, min_score: float = 0.3
    ) -> None:
        self.entities = tuple(entities)
        self._prefiltered = set(self.entities) <= _PREFILTERED
        self._numeric = bool(_NUMERIC & set(self.entities))
        self._min_score = min_score
        self._matcher: PiiMatcher | None = None  # loaded on first use (Presidio takes ~1 s)

    def __call__(self, text: str) -> str:
        if not text or not self._may_hold_entities(text):
            return text
        if self._numeric:
            text = _mask_dense_numbers(text)
        matcher = self.load()
        spans: list[tuple[int, int, str]] = []
        for match in matcher.find(text):
            if spans and match.start < spans[-1][1]:  # overlaps the previous finding: merge
                start, end, label = spans[-1]
                wider = match.end - match.start > end - start
                spans[-1] = (start, max(end, match.end), match.label if wider else label)
            else:
                spans.append((match.start, match.end, match.label))
        if self._numeric:
            covered = [(a, b) for a, b, _ in spans]
            spans += [(m.start(), m.end(), "NUMBER") for m in _LONG_DIGITS.finditer(text)
                      if not any(a <= m.start() and m.end() <= b for a, b in covered)]  # fmt: skip
            spans.sort()
        if not spans:
            return text
        widened: list[tuple[int, int, str]] = []
        for span in (_widened(text, *s) if s[2] in _NUMERIC else s for s in spans):
            if widened and span[0] < widened[-1][1]:  # grown into the previous one: one span
                widened[-1] = (widened[-1][0], max(widened[-1][1], span[1]), widened[-1][2])
            else:
                widened.append(span)
        spans = widened
        parts, cursor = [], 0
        for start, end, label in spans:
            parts += [text[cursor:start], f"<{label}>"]
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts)

    @property
    def loaded(self) -> bool:
        return self._matcher is not None

    def load(self) -> PiiMatcher:
        """The recognizers, loaded now if they are not yet. A worker calls this before its
        first batch: loading Presidio takes 1–7 s on a busy machine, which the first text
        that may hold personal data would otherwise wait for (once per process)."""
        if self._matcher is None:
            self._matcher = PiiMatcher(self.entities, self._min_score, "any")
        return self._matcher

    def _may_hold_entities(self, text: str) -> bool:
        """A cheap necessary condition, for the entities whose shape is known: an e-mail
        needs an ``@``; an IPv4 address four dotted numbers; an IPv6 one two colons with at
        most four hex digits between them; phone (10+ digits), card, IBAN, SSN and bank
        numbers at least 8 digits. Most texts hold none of these and skip Presidio (10x the
        events/s on ``bench/privacy.py``'s replay path; a prompt with a colon, like
        ``bench/pipeline.py``'s, cost ~0.75 ms in Presidio on an idle core while any colon
        made a candidate, several ms on a loaded one)."""
        if not self._prefiltered:
            return True
        if "@" in text or _IPV6.search(text) or _IPV4.search(text):
            return True
        return sum(map(str.isdigit, text)) >= _MIN_DIGITS


def _mask_dense_numbers(text: str) -> str:
    """``text`` with every run of 8+ digits replaced by ``<NUMBER>`` if it holds more than
    :data:`_DENSE_RUNS` of them, else as it is (linear time either way)."""
    runs = [m for m in _NUMBER_RUN.finditer(text) if sum(c.isdigit() for c in m.group()) >= 8]
    if len(runs) <= _DENSE_RUNS:
        return text
    parts, cursor = [], 0
    for run in runs:
        parts += [text[cursor : run.start()], "<NUMBER>"]
        cursor = run.end()
    parts.append(text[cursor:])
    return "".join(parts)


def _widened(text: str, start: int, end: int, label: str) -> tuple[int, int, str]:
    """A number's span grown over the digit groups it touches (``415 555 <PHONE_NUMBER>``
    would keep part of a number the matcher split), never into the next finding's text."""
    while start > 0 and (text[start - 1].isdigit() or (
            start > 1 and text[start - 1] in " .-" and text[start - 2].isdigit())):  # fmt: skip
        start -= 1
    while end < len(text) and (text[end].isdigit() or (
            end + 1 < len(text) and text[end] in " .-" and text[end + 1].isdigit())):  # fmt: skip
        end += 1
    return start, end, label
