"""Signals that read the text itself: regular expressions, keywords and PII recognizers.

Some failure modes are patterns, not meanings: an e-mail address in an answer, refusal
boilerplate, a leaked system-prompt marker. A few-shot classifier on a sentence embedding
reaches ~0.9 F1 on them; a recognizer finds them with near-perfect precision. Two kinds:

- ``pattern``: regular expressions and/or keywords (``case_sensitive``, ``whole_word``); the
  score is 1.0 on a match and 0.0 otherwise.
- ``pii``: Microsoft Presidio's pattern recognizers (e-mail, phone via ``phonenumbers``, cards,
  IBAN, IP, ...) for the spec's ``entities``; the score is the highest entity score found.

Both return the matched spans (offsets and what matched), which the guardrail API passes on.

Patterns run on the ``regex`` package with a per-text time limit (:data:`MATCH_TIMEOUT_S`), so
a pattern that backtracks catastrophically on some input costs at most that long: the text
counts as not matched and the timeout is logged and counted (:attr:`PatternMatcher.timeouts`),
never raised into the pipeline. Patterns are compiled when the spec is validated, so a bad one
is refused at ``signals add`` with the position of the error.

Presidio runs offline: its spaCy engine gets ``spacy.blank("en")`` (no model download; the
pattern recognizers do the work) and the public-suffix list that its e-mail recognizer consults
through ``tldextract`` comes from the snapshot bundled with ``tldextract``, never the network.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import regex

__all__ = [
    "MATCH_TIMEOUT_S",
    "NOT_A_PHONE",
    "PHONE_MIN_DIGITS",
    "PII_ENTITIES",
    "RESERVED_EMAIL_DOMAINS",
    "TEXT_KINDS",
    "Match",
    "PatternMatcher",
    "PiiMatcher",
    "TextMatcher",
    "check_pattern",
    "score_of",
]

log = logging.getLogger(__name__)

TEXT_KINDS = frozenset({"pattern", "pii"})
"""Signal kinds that score the text, not its embedding."""

MATCH_TIMEOUT_S = 0.05
"""Longest a pattern may search one text; past it the text counts as not matched."""

PII_ENTITIES = frozenset({
    "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS",
    "MAC_ADDRESS", "MEDICAL_LICENSE", "PHONE_NUMBER", "UK_NHS", "URL", "US_BANK_NUMBER",
    "US_DRIVER_LICENSE", "US_ITIN", "US_PASSPORT", "US_SSN", "UUID",
})  # fmt: skip
"""Entities Presidio's pattern recognizers find without a trained NER model (checked against
the installed Presidio in the tests). ``PERSON``, ``LOCATION`` and the like need a spaCy model
with NER, which ``spacy.blank`` is not, so they are refused rather than silently never found."""


@dataclass(frozen=True)
class Match:
    """One matched span of a text: ``text[start:end]``, what found it, and how sure it is."""

    start: int
    end: int
    label: str  # the pattern, keyword or PII entity type
    score: float = 1.0


class TextMatcher(Protocol):
    """Finds a signal's matches in one text; the signal's score is :meth:`score` of them."""

    def find(self, text: str) -> list[Match]: ...


def score_of(matches: Sequence[Match]) -> float:
    """A text's score: the highest match score, 0.0 without matches."""
    return max((m.score for m in matches), default=0.0)


def check_pattern(pattern: str) -> None:
    """Compile ``pattern``; a bad one raises ``ValueError`` naming the position of the error."""
    try:
        regex.compile(pattern)
    except regex.error as exc:
        position, message = getattr(exc, "pos", None), getattr(exc, "msg", str(exc))
        where = f" at position {position}" if position is not None else ""
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression{where}: "
                         f"{message}") from exc  # fmt: skip


class PatternMatcher:
    """Regular expressions and keywords of one ``pattern`` spec, searched with a time limit."""

    def __init__(
        self,
        patterns: Sequence[str],
        keywords: Sequence[str] = (),
        *,
        case_sensitive: bool = False,
        whole_word: bool = True,
        timeout_s: float = MATCH_TIMEOUT_S,
    ) -> None:
        flags = regex.V1 if case_sensitive else regex.V1 | regex.IGNORECASE
        compiled = [(p, regex.compile(p, flags)) for p in patterns]
        for word in keywords:
            body = regex.escape(word)
            if whole_word:  # word edges only where the keyword starts or ends with a word char
                body = (r"(?<!\w)" if word[:1].isalnum() or word[:1] == "_" else "") + body
                body += r"(?!\w)" if word[-1:].isalnum() or word[-1:] == "_" else ""
            compiled.append((word, regex.compile(body, flags)))
        self._compiled = tuple(compiled)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self.timeouts = 0

    def find(self, text: str) -> list[Match]:
        found = []
        for label, pattern in self._compiled:
            try:
                hit = pattern.search(text, timeout=self._timeout_s)
            except TimeoutError:
                with self._lock:
                    self.timeouts += 1
                log.warning("pattern %r gave up after %.0f ms on a text of %d characters",
                            label, self._timeout_s * 1000, len(text))  # fmt: skip
                continue
            if hit is not None:
                found.append(Match(hit.start(), hit.end(), label))
        return found


PHONE_MIN_DIGITS = 10
"""With ``phone_numbers: possible``, a phone number needs at least this many digits: a year, a
four-digit code or an order id like ``4411-2093`` is not one; a number with its area or
country code is."""


_DIGITS_BEFORE = regex.compile(r"\d[ .-]?$")
_DIGITS_AFTER = regex.compile(r"[ .-]?\d")
NOT_A_PHONE = regex.compile(
    r"\b(isbn|order|tracking|invoice|sku|serial|ref(erence)?|part|model|batch|case)"
    r"(\s+(no|number|num|id|#))?\.?[\s:#]*(is\s+)?$",
    regex.IGNORECASE,
)
"""With ``phone_numbers: possible``: a number right after one of these words is an identifier
("order 4411-2093-88", "ISBN 978-0-13-468599-1"), not a phone number."""

RESERVED_EMAIL_DOMAINS = regex.compile(
    r"@([\w-]+\.)*(example\.(com|net|org)|[\w-]+\.(example|test|invalid|localhost))$",
    regex.IGNORECASE,
)
"""Domains reserved for documentation and tests (RFC 2606, RFC 6761): an address on them
(``name@example.com``) is a placeholder, not anybody's address."""


_PLACEHOLDER = regex.compile(r"<([A-Z][A-Z_]{1,40})>")
"""A redacted entity, as :class:`signals.redaction.Redactor` writes it."""


class PiiMatcher:
    """Presidio's pattern recognizers for ``entities``; matches below ``min_score`` are dropped.

    ``phone_numbers``: ``valid`` keeps Presidio's default (numbers that ``phonenumbers`` holds
    valid for their region: allocated ranges, right lengths); ``possible`` also takes numbers
    of a possible length and shape with at least :data:`PHONE_MIN_DIGITS` digits that stand
    alone; ``any`` (redaction) takes them wherever they stand. Generated
    answers leak invented numbers as readily as real ones, and invented ones are often not
    "valid" (``+49 151 8142140`` has a digit too few for a German mobile): measured on the
    ``pii_leak`` mode of ``bench/data/chat_eval.jsonl`` (``bench/text_kinds.py``).
    """

    def __init__(self, entities: Sequence[str], min_score: float,
                 phone_numbers: str = "possible") -> None:  # fmt: skip
        self._entities = list(entities)
        self._min_score = min_score
        self._analyzer = _offline_analyzer(phone_numbers)

    def find(self, text: str) -> list[Match]:
        """The entities found, and the placeholders of redacted text (``<EMAIL_ADDRESS>``,
        score 1.0): stored redacted text still holds the leak, as a placeholder."""
        if not text:
            return []
        results = self._analyzer.analyze(text=text, language="en", entities=self._entities,
                                         score_threshold=self._min_score)  # fmt: skip
        found = [
            Match(r.start, r.end, r.entity_type, float(r.score))
            for r in results
            if not (
                r.entity_type == "EMAIL_ADDRESS"
                and RESERVED_EMAIL_DOMAINS.search(text[r.start : r.end])
            )
        ]
        if "<" in text:
            placeholders = _PLACEHOLDER.finditer(text)
            found += [Match(m.start(), m.end(), m.group(1), 1.0)
                      for m in placeholders if m.group(1) in self._entities]  # fmt: skip
        return sorted(found, key=lambda m: (m.start, m.end, m.label))


@lru_cache(maxsize=2)
def _offline_analyzer(phone_numbers: str = "valid") -> Any:
    """One Presidio analyzer per phone rule and process (loading its recognizers takes ~1 s)."""
    import spacy
    import tldextract.tldextract as tld
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    # The e-mail recognizer calls tldextract.extract(), which fetches the public-suffix list
    # on first use; the bundled snapshot answers instead, with no network and no warning.
    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None,
                                       fallback_to_snapshot=True)  # fmt: skip

    class BlankSpacy(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    engine = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    if phone_numbers in ("possible", "any"):
        strict = phone_numbers == "possible"

        class PossiblePhones(PhoneRecognizer):
            def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
                found = super().analyze(text, entities, nlp_artifacts)
                return [r for r in found if _looks_like_phone(text, r.start, r.end, strict)]

        registry.remove_recognizer("PhoneRecognizer")
        registry.add_recognizer(PossiblePhones(leniency=0))
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


def _looks_like_phone(text: str, start: int, end: int, strict: bool = True) -> bool:
    """Whether a number of possible phone shape at ``text[start:end]`` is taken as one: enough
    digits, not all the same digit, not part of a longer token (``1Z999AA10123456784``,
    ``192.168.0.0/16``) nor of a longer group of digits (the last 12 digits of the card
    number ``5500 0055 5555 5559``), and not right after an identifier's name
    (:data:`NOT_A_PHONE`). Not ``strict`` (redaction, where a number wrongly hidden costs
    little and one wrongly kept is a leak): enough digits, not all the same, is enough."""
    digits = [c for c in text[start:end] if c.isdigit()]
    if len(digits) < PHONE_MIN_DIGITS or len(set(digits)) == 1:
        return False
    if not strict:
        return True
    if "/" in text[start:end]:
        return False
    before, after = text[start - 1 : start], text[end : end + 1]
    if before.isalnum() or (before and before in "/.-") or after.isalnum() or after == "/":
        return False
    if _DIGITS_BEFORE.search(text[max(0, start - 3) : start]) or _DIGITS_AFTER.match(
        text[end : end + 3]
    ):
        return False
    return NOT_A_PHONE.search(text[max(0, start - 30) : start]) is None
