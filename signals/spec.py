"""Signal specifications: what a failure mode is, as a frozen, validated, serialisable object,
usually written in YAML and loaded with :func:`load_spec`. The fields, the kinds (few-shot,
zero-shot, pattern, pii) and labelling functions for weak supervision are documented with
examples in ``docs/signals/index.md`` and ``docs/signals/weak-supervision.md``; the models below
are the reference, each field with its constraints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signals.actions import Action
from signals.base import Modality, Target
from signals.errors import SpecError
from signals.matchers import PII_ENTITIES, TEXT_KINDS, check_pattern

__all__ = [
    "EventRef",
    "Example",
    "Examples",
    "LabellingFunction",
    "SignalSpec",
    "field_key",
    "load_spec",
    "parse_spec",
]


def field_key(target: Target, modality: Modality) -> str:
    """The embedding field a signal reads: ``prompt.text``, ``output.text`` or ``output.image``."""
    return f"{target}.{modality}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventRef(_Frozen):
    """An example that is an event already stored: its embedding is reused, not recomputed."""

    event_id: str = Field(min_length=1, max_length=256)


Example = str | EventRef
"""Inline text, an image reference (path, URL, base64), or ``{event_id: ...}``."""


class Examples(_Frozen):
    """Labelled examples. Inline ones must match the spec's modality."""

    positive: tuple[Example, ...] = ()
    negative: tuple[Example, ...] = ()

    def with_example(self, example: Example, positive: bool) -> Examples:
        """A copy with ``example`` added to one class and removed from the other."""
        pos = tuple(e for e in self.positive if e != example)
        neg = tuple(e for e in self.negative if e != example)
        if positive:
            return Examples(positive=(*pos, example), negative=neg)
        return Examples(positive=pos, negative=(*neg, example))


class LabellingFunction(_Frozen):
    """One noisy labelling source for weak supervision; exactly one of ``signal``,
    ``patterns``/``keywords``, ``query``, ``feedback`` or ``examples`` (the nearest gold
    example: failure where an event's best window is ``margin`` nearer, by cosine, to a
    positive example's windows than to any negative's; fine the other way round).

    ``votes``: which of its votes count (``positive``: only "failure" where it fires,
    abstaining elsewhere; ``negative``: only "fine" where it does not fire; ``both``). Default:
    ``positive`` for patterns, ``both`` for the others."""

    name: str = Field(default="", max_length=200)
    signal: str | None = Field(default=None, min_length=1, max_length=200)
    patterns: tuple[str, ...] = Field(default=(), max_length=200)
    keywords: tuple[str, ...] = Field(default=(), max_length=2000)
    case_sensitive: bool = False
    whole_word: bool = True
    query: str | None = Field(default=None, min_length=1, max_length=2000)
    top: float = Field(default=0.05, ge=0.0, le=1.0, description="query: share voting failure")
    bottom: float = Field(default=0.5, ge=0.0, le=1.0, description="query: share voting fine")
    feedback: bool = False
    examples: bool = False
    margin: float = Field(default=0.05, ge=0.0, le=1.0,
                          description="examples: how much nearer one class must be")  # fmt: skip
    votes: Literal["positive", "negative", "both"] | None = None

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            check_pattern(pattern)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LabellingFunction:
        sources = [self.signal is not None, bool(self.patterns or self.keywords),
                   self.query is not None, self.feedback, self.examples]  # fmt: skip
        if sum(sources) != 1:
            raise ValueError("a labelling function has exactly one of signal, "
                             "patterns/keywords, query, feedback or examples")  # fmt: skip
        if self.top + self.bottom > 1.0:
            raise ValueError("top + bottom must not exceed 1 (the shares would overlap)")
        return self

    @property
    def counted_votes(self) -> Literal["positive", "negative", "both"]:
        """``votes``, or its default for the source."""
        if self.votes is not None:
            return self.votes
        return "positive" if (self.patterns or self.keywords) else "both"

    @property
    def label(self) -> str:
        """A readable name: ``name``, or the source it reads."""
        if self.name:
            return self.name
        if self.signal is not None:
            return f"signal:{self.signal}"
        if self.query is not None:
            return f"query:{self.query[:40]}"
        if self.feedback:
            return "feedback"
        if self.examples:
            return "examples"
        return "pattern:" + "|".join((*self.patterns, *self.keywords))[:40]


class SignalSpec(_Frozen):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    target: Target = "output"
    modality: Modality = "text"
    kind: Literal["few_shot", "zero_shot", "pattern", "pii"] = "few_shot"
    classifier: Literal["logistic", "mlp"] = "logistic"
    hidden_units: int = Field(default=8, ge=1, le=256, description="MLP hidden layer width")
    examples: Examples = Examples()
    query: str | None = None
    patterns: tuple[str, ...] = Field(default=(), max_length=200)
    keywords: tuple[str, ...] = Field(default=(), max_length=2000)
    case_sensitive: bool = False
    whole_word: bool = True
    entities: tuple[str, ...] = ()
    min_score: float = Field(default=0.3, ge=0.0, le=1.0, description="lowest PII score kept")
    phone_numbers: Literal["possible", "valid"] = Field(
        default="possible",
        description="pii: 'valid' numbers only (allocated ranges) or any 'possible' number of "
        "10+ digits (invented numbers leak too)",
    )
    labelling_functions: tuple[LabellingFunction, ...] = Field(default=(), max_length=50)
    threshold: float | Literal["auto"] = "auto"
    beta: float = Field(default=0.5, gt=0, description="F-beta used to pick an auto threshold")
    regularization: float = Field(default=1.0, gt=0, description="inverse strength C")
    seed: int = 0
    owner: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    action: Action = Field(
        default="log",
        description="guardrail verdict when this signal flags an event (telltale serve): "
        "'block' stops the answer, 'flag' lets it through marked, 'log' only records the score",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("name must not contain control characters")
        return value

    @field_validator("threshold")
    @classmethod
    def _probability(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("threshold must be 'auto' or a probability strictly between 0 and 1")
        return value

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            check_pattern(pattern)
        return value

    @field_validator("keywords")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not word.strip() for word in value):
            raise ValueError("keywords must not be empty or blank")
        return value

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - PII_ENTITIES)
        if unknown:
            raise ValueError(
                f"unknown PII entit{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(unknown)}; known: {', '.join(sorted(PII_ENTITIES))}"
            )
        return value

    @model_validator(mode="after")
    def _text_kinds(self) -> SignalSpec:
        reads_text = self.kind in TEXT_KINDS
        if reads_text and self.modality != "text":
            raise ValueError(f"kind {self.kind!r} reads text; use modality: text")
        if self.kind == "pattern" and not (self.patterns or self.keywords):
            raise ValueError("kind 'pattern' needs patterns or keywords")
        if self.kind == "pii" and not self.entities:
            raise ValueError("kind 'pii' needs entities, e.g. [EMAIL_ADDRESS, PHONE_NUMBER]")
        if self.kind != "pattern" and (self.patterns or self.keywords):
            raise ValueError("patterns and keywords are only used by kind 'pattern'")
        if self.kind != "pii" and self.entities:
            raise ValueError("entities are only used by kind 'pii'")
        if reads_text and self.query:
            raise ValueError(f"query is not used by kind {self.kind!r}")
        if self.labelling_functions and (self.kind != "few_shot" or self.classifier != "logistic"):
            raise ValueError("labelling_functions train a few_shot logistic signal only")
        if any(f.signal == self.name for f in self.labelling_functions):
            raise ValueError("a labelling function cannot name the signal it trains")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> SignalSpec:
        if self.target == "prompt" and self.modality == "image":
            raise ValueError("target 'prompt' has no image modality; use modality: text")
        if self.kind == "zero_shot" and not self.query:
            raise ValueError("kind 'zero_shot' needs a query text")
        if self.kind == "few_shot" and self.query:
            raise ValueError("query is only used by kind 'zero_shot'")
        if self.kind != "few_shot" and self.classifier != "logistic":
            raise ValueError("classifier 'mlp' applies to kind 'few_shot' only")
        return self

    @property
    def reads_text(self) -> bool:
        """Whether the signal scores the text itself (``pattern``, ``pii``), not its embedding."""
        return self.kind in TEXT_KINDS

    @property
    def field(self) -> str:
        return field_key(self.target, self.modality)

    def resolve_paths(self, base_dir: Path) -> SignalSpec:
        """Return a copy whose relative image paths are resolved against ``base_dir``."""
        if self.modality != "image":
            return self

        def fix(ref: Example) -> Example:
            if isinstance(ref, EventRef):
                return ref
            if (
                "://" in ref
                or ref.startswith("data:")
                or len(ref) > 1024
                or Path(ref).is_absolute()
            ):
                return ref
            candidate = base_dir / ref
            return str(candidate) if candidate.exists() else ref

        examples = Examples(
            positive=tuple(fix(r) for r in self.examples.positive),
            negative=tuple(fix(r) for r in self.examples.negative),
        )
        return self.model_copy(update={"examples": examples})


_SURROGATE = re.compile("[\ud800-\udfff]")


def _whole_characters(
    value: Any, source: str, where: str = "", seen: frozenset[int] = frozenset()
) -> Any:
    """``value`` with each UTF-16 surrogate pair in its strings (and keys) made the character
    it encodes; a lone surrogate raises :class:`SpecError` naming the field.

    ``json.dumps`` escapes a character outside the Basic Multilingual Plane (an emoji) as a
    pair, ``"\\ud83d\\ude00"``, and YAML decodes each half on its own: two lone surrogates,
    which no tokenizer or UTF-8 encoder accepts. A container that holds itself (a YAML alias)
    is left as it is, for validation to refuse."""
    if isinstance(value, str):
        if not _SURROGATE.search(value):
            return value
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SpecError(f"{source}: {where or 'spec'}: lone UTF-16 surrogate (half of an "
                            "escaped pair such as \\ud83d\\ude00); write the character "
                            "itself or both halves") from exc  # fmt: skip
    if not isinstance(value, dict | list | tuple) or id(value) in seen:
        return value
    seen = seen | {id(value)}
    if isinstance(value, dict):
        return {_whole_characters(k, source, where or "spec"):
                _whole_characters(v, source, f"{where}.{k}" if where else str(k), seen)
                for k, v in value.items()}  # fmt: skip
    return [_whole_characters(v, source, f"{where}.{i}" if where else str(i), seen)
            for i, v in enumerate(value)]  # fmt: skip


def parse_spec(data: Any, source: str = "spec") -> SignalSpec:
    """Validate a mapping as a spec; errors name the offending field.

    Surrogate pairs in its strings become the characters they encode; a lone surrogate is
    refused (see :func:`_whole_characters`)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a signal spec must be a mapping, got {type(data).__name__}")
    data = _whole_characters(data, source)
    try:
        return SignalSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise SpecError(f"{source}: {problems}") from exc


def load_spec(path: str | Path) -> SignalSpec:
    """Read a YAML spec (``yaml.safe_load``), validate it, and resolve relative image paths."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return parse_spec(data, source=str(path)).resolve_paths(path.parent)
