"""The matcher behind a text-kind spec (``pattern``, ``pii``) and the id it is stored under.

Apart from :mod:`signals.matchers` so that the matchers know nothing of specs (the spec module
checks its patterns and entities with the matchers' rules).
"""

from __future__ import annotations

from signals.matchers import PatternMatcher, PiiMatcher, TextMatcher
from signals.spec import SignalSpec

__all__ = ["matcher_for", "matcher_id"]


def matcher_for(spec: SignalSpec) -> TextMatcher:
    """The matcher of a ``pattern`` or ``pii`` spec."""
    if spec.kind == "pattern":
        return PatternMatcher(spec.patterns, spec.keywords, case_sensitive=spec.case_sensitive,
                              whole_word=spec.whole_word)  # fmt: skip
    if spec.kind == "pii":
        return PiiMatcher(spec.entities, spec.min_score, spec.phone_numbers)
    raise ValueError(f"signal {spec.name!r} of kind {spec.kind!r} does not read text")


def matcher_id(spec: SignalSpec) -> str:
    """What scores a text-kind signal, with its version: stored as the fitted signal's
    ``embedder_id`` (``regex-2026.12.2``, ``presidio-2.2.366``)."""
    from importlib.metadata import version

    return f"regex-{version('regex')}" if spec.kind == "pattern" else \
        f"presidio-{version('presidio-analyzer')}"  # fmt: skip
