"""Rates you can trust: draw audits, read each signal's measured errors, correct rates.

Wires :mod:`signals.audit` (the statistics) to :mod:`storage.audits` (the tables). Every place
that shows a rate (``telltale rates``, slice rows, the report, the live page, release incidents)
asks :func:`load_errors` once and :meth:`SignalErrors.correct` per row.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from signals import NEAR_QUANTILE, ErrorModel, StratumCount, allocate, error_shift
from streams import JsonTooDeep, parse_json

if TYPE_CHECKING:
    from alerts import InstrumentCheck
    from signals import ErrorShift, FittedSignal
    from storage import AuditSample, StratumLabels

__all__ = [
    "Answer",
    "AuditDraw",
    "SignalErrors",
    "draw",
    "error_report",
    "import_answers",
    "load_errors",
    "load_errors_for",
    "no_audit_fields",
    "read_answers",
    "record_estimates",
    "release_instrument",
]


@dataclass(frozen=True)
class AuditDraw:
    audit_id: str
    signal: str
    signal_version: int
    near_cut: float
    population: dict[tuple[str, str], int]
    samples: list[AuditSample]
    contents: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "signal": self.signal,
            "signal_version": self.signal_version,
            "near_cut": self.near_cut if self.near_cut != float("inf") else None,
            "strata": [
                {"model_version": mv, "stratum": band, "size": n,
                 "drawn": sum(1 for s in self.samples if (s.model_version, s.band) == (mv, band))}
                for (mv, band), n in sorted(self.population.items())
            ],
            "events": [
                {**s.as_dict(), "content": self.contents.get(s.event_id, "")}
                for s in self.samples
            ],
        }  # fmt: skip


def draw(
    client: Any,
    fitted: FittedSignal,
    labels: int,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    audit_id: str | None = None,
) -> AuditDraw:
    """Draw and store a stratified audit sample of ``labels`` events of ``fitted``'s version.

    ``audit_id`` (default: the time and a random suffix) also salts the random order, so the
    same id draws the same events from the same stored scores."""
    from storage import audit_population, draw_audit, event_contents

    near_cut, sizes = audit_population(
        client, fitted.name, fitted.version, NEAR_QUANTILE, model=model, since=since, until=until
    )
    audit_id = audit_id or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    take = allocate(sizes, labels) if sizes else {}
    samples = draw_audit(
        client, audit_id, fitted.name, fitted.version, near_cut, take, sizes,
        model=model, since=since, until=until,
    )  # fmt: skip
    contents = event_contents(client, [s.event_id for s in samples], fitted.field)
    return AuditDraw(audit_id, fitted.name, fitted.version, near_cut, sizes, samples, contents)


def _model(strata: Iterable[StratumLabels]) -> ErrorModel | None:
    counts = [
        StratumCount((s.model_version, s.band), s.size, s.labelled, s.failures) for s in strata
    ]
    return ErrorModel(counts) if any(c.labelled for c in counts) else None


@dataclass
class SignalErrors:
    """A signal's measured errors: pooled over product versions, and per version where that
    version has at least ``min_version_labels`` labels."""

    signal: str
    audited_version: int
    pooled: ErrorModel
    by_model_version: dict[str, ErrorModel] = field(default_factory=dict)

    def model_for(self, model_version: str | None) -> tuple[ErrorModel, str]:
        if model_version is not None and model_version in self.by_model_version:
            return self.by_model_version[model_version], f"model_version {model_version}"
        return self.pooled, "all audited versions"

    def correct(
        self, model_version: str | None, events: int, failures: float,
        effective_events: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The ``corrected_*`` fields of one rate row (``effective_events``: see
        :meth:`signals.ErrorModel.correct`)."""
        if events <= 0:
            return no_audit_fields("no events")
        model, scope = self.model_for(model_version)
        rate = model.correct(events, failures, effective_events=effective_events)
        return {
            "corrected_rate": rate.rate, "corrected_low": rate.low,
            "corrected_high": rate.high,
            "correction": {"audited_signal_version": self.audited_version,
                           "labels": model.labelled, "errors_from": scope,
                           "effective_events": effective_events,
                           **({"note": rate.note} if rate.note else {})},
        }  # fmt: skip

    def error_shifts(self) -> list[ErrorShift]:
        """Audited precision of consecutive product versions (in name order) compared."""
        versions = sorted(self.by_model_version)
        shifts = []
        for before, after in pairwise(versions):
            shift = error_shift(
                before, after, self.by_model_version[before], self.by_model_version[after]
            )
            if shift is not None:
                shifts.append(shift)
        return shifts


def no_audit_fields(reason: str = "signal not audited") -> dict[str, Any]:
    """The ``corrected_*`` fields of a row that cannot be corrected, saying why."""
    return {"corrected_rate": None, "corrected_low": None, "corrected_high": None,
            "correction": {"note": reason}}  # fmt: skip


def load_errors(
    client: Any, signal: str, *, min_version_labels: int = 20, include_judge: bool = False
) -> SignalErrors | None:
    """The measured errors of the newest audited version of ``signal`` (None: no labels)."""
    from storage import audit_stratum_labels

    rows = client.query(
        "SELECT DISTINCT signal_version FROM audit_samples WHERE signal = {s:String} "
        "ORDER BY signal_version DESC",
        parameters={"s": signal},
    ).result_rows
    for (version,) in rows:
        strata = audit_stratum_labels(client, signal, int(version), include_judge=include_judge)
        pooled = _model(strata)
        if pooled is None:
            continue
        per_version: dict[str, ErrorModel] = {}
        for mv in sorted({s.model_version for s in strata}):
            mine = [s for s in strata if s.model_version == mv]
            if sum(s.labelled for s in mine) >= min_version_labels:
                model = _model(mine)
                if model is not None:
                    per_version[mv] = model
        return SignalErrors(signal, int(version), pooled, per_version)
    return None


def load_errors_for(
    client: Any, signals: Iterable[str], *, min_version_labels: int = 20,
    include_judge: bool = False,
) -> dict[str, SignalErrors | None]:  # fmt: skip
    """:func:`load_errors` for each distinct signal name."""
    return {
        name: load_errors(client, name, min_version_labels=min_version_labels,
                          include_judge=include_judge)
        for name in sorted(set(signals))
    }  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """One line of an answers file: ``{"event_id": ..., "label": 0|1, "labeller": ...}``."""

    line: int
    event_id: str
    label: int
    labeller: str | None


_ANSWER_KEYS = {"event_id", "label", "labeller"}


def read_answers(text: str) -> list[Answer]:
    """Parse an answers file (JSON lines); the first bad line raises ``ValueError`` naming it.

    Blank lines are skipped. ``label`` must be the integer 0 or 1 (not ``true``, not ``"1"``).
    """
    answers = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            doc = parse_json(raw)
        except JsonTooDeep as exc:
            raise ValueError(f"line {number}: {exc.reason}") from exc
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.__class__.__name__})") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        unknown = sorted(set(doc) - _ANSWER_KEYS)
        if unknown:
            raise ValueError(f"line {number}: unknown keys {unknown}")
        event_id, label, labeller = doc.get("event_id"), doc.get("label"), doc.get("labeller")
        if not isinstance(event_id, str) or not event_id:
            raise ValueError(f"line {number}: event_id must be a non-empty string")
        if type(label) is not int or label not in (0, 1):
            raise ValueError(f"line {number}: label must be 0 or 1, got {label!r}")
        if labeller is not None and (not isinstance(labeller, str) or not labeller.strip()):
            raise ValueError(f"line {number}: labeller must be a non-empty string")
        answers.append(Answer(number, event_id, label, labeller))
    if not answers:
        raise ValueError("the answers file holds no answer")
    return answers


def import_answers(
    client: Any, signal: str, answers: list[Answer], *, labeller: str, source: str = "audit"
) -> tuple[int, int, int]:
    """Validate every answer against the stored events and audits, then store them all.

    Nothing is stored when one answer is bad: an unknown event, or an event no audit of
    ``signal`` drew. Returns (new, unchanged, changed).
    """
    from storage import AuditLabel, drawn_versions, store_audit_labels

    ids = sorted({a.event_id for a in answers})
    stored = {
        str(r[0])
        for r in client.query(
            "SELECT DISTINCT event_id FROM events WHERE event_id IN {ids:Array(String)}",
            parameters={"ids": ids},
        ).result_rows
    }
    drawn = drawn_versions(client, signal, ids)
    for a in answers:
        if a.event_id not in stored:
            raise ValueError(f"line {a.line}: unknown event {a.event_id!r}")
        if a.event_id not in drawn:
            raise ValueError(
                f"line {a.line}: event {a.event_id!r} was not drawn in an audit of {signal!r}"
            )
    labels = [
        AuditLabel(signal, version, a.event_id, a.label, a.labeller or labeller, source)
        for a in answers
        for version in sorted(drawn[a.event_id])
    ]
    return store_audit_labels(client, labels)


def error_report(errors: SignalErrors | None) -> dict[str, Any]:
    """What ``signals eval`` and ``signals audit`` print of a signal's measured errors."""
    if errors is None:
        return {"audited": False, "note": "no audit labels yet: `telltale signals audit NAME`"}
    shifts = errors.error_shifts()
    return {
        "audited": True,
        "audited_signal_version": errors.audited_version,
        "all_versions": errors.pooled.estimate().as_dict(),
        "by_model_version": {
            mv: model.estimate().as_dict() for mv, model in errors.by_model_version.items()
        },
        "error_shifts": [s.as_dict() for s in shifts],
        "instrument_changed": any(s.changed for s in shifts),
    }


def record_estimates(client: Any, errors: SignalErrors) -> None:
    """Store the current estimates (all versions, and each version with its own) for the
    dashboards' corrected series and audited-precision history."""
    from storage import ErrorEstimateRow, record_error_estimates

    now = datetime.now(UTC)
    scopes = [("", errors.pooled), *errors.by_model_version.items()]
    rows = []
    for model_version, model in scopes:
        e = model.estimate()
        rows.append(ErrorEstimateRow(
            errors.signal, errors.audited_version, model_version, e.labelled,
            (e.sensitivity.value, e.sensitivity.low, e.sensitivity.high),
            (e.specificity.value, e.specificity.low, e.specificity.high),
            (e.precision.value, e.precision.low, e.precision.high), now,
        ))  # fmt: skip
    record_error_estimates(client, rows)


def release_instrument(
    client: Any, *, min_version_labels: int = 20, include_judge: bool = False
) -> InstrumentCheck:
    """The release incident's instrument check (``alerts.tracks.instrument``) over the audits."""

    def check(
        *, signal: str, version: str, baseline_version: str, n_new: int, k_new: int,
        n_base: int, k_base: int,
    ) -> dict[str, Any]:  # fmt: skip
        errors = load_errors(client, signal, min_version_labels=min_version_labels,
                             include_judge=include_judge)  # fmt: skip
        if errors is None:
            note = "signal not audited: the rates are flag rates, not failure rates"
            return {"audited": False, "note": note}
        after = errors.correct(version, n_new, k_new)
        before = errors.correct(baseline_version, n_base, k_base)
        shift = None
        if {version, baseline_version} <= set(errors.by_model_version):
            shift = error_shift(baseline_version, version,
                                    errors.by_model_version[baseline_version],
                                    errors.by_model_version[version])  # fmt: skip
        if shift is not None and shift.changed:
            changed = "instrument"
            note = (
                f"the signal's audited errors on {version} differ from {baseline_version}: "
                "the flags moved with the instrument; audit the new version before trusting them"
            )
        elif after["corrected_low"] > before["corrected_high"]:
            changed = "product"
            note = "the corrected failure rate rose: the product changed"
        else:
            changed = "undetermined"
            note = "the corrected rates' intervals overlap: more audit labels would tell"
        return {"audited": True, "changed": changed, "note": note,
                "corrected_before": before, "corrected_after": after,
                "error_shift": shift.as_dict() if shift else None}  # fmt: skip

    return check
