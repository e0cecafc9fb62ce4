"""The LLM judge in an audit: it labels the drawn sample, never the traffic.

Its labels are stored with labeller ``judge:MODEL`` and source ``judge``; they enter the
correction only with ``TELLTALE_AUDIT_USE_JUDGE_LABELS=true``, to be set once its agreement
with people's labels (printed here) is known to be good enough.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telltale.cli_common import cli_settings

if TYPE_CHECKING:
    from signals import FittedSignal
    from telltale.trust import AuditDraw

__all__ = ["judge_sample"]


def judge_sample(client: Any, fitted: FittedSignal, drawn: AuditDraw) -> dict[str, Any]:
    """Ask the judge about every drawn event; store its labels; say how far it agrees."""
    from signals import Judge, JudgeConfig, JudgeTally
    from storage import AuditLabel, judge_agreement, store_audit_labels

    settings = cli_settings().judge
    if not settings.url or not settings.model:
        raise ValueError("--judge needs TELLTALE_JUDGE_URL and TELLTALE_JUDGE_MODEL")
    key = settings.api_key.get_secret_value() if settings.api_key else None
    judge = Judge(JudgeConfig(settings.url, settings.model, key, timeout_s=settings.timeout_s,
                              max_attempts=settings.max_attempts))  # fmt: skip
    description = fitted.spec.description or fitted.name
    samples = [s for s in drawn.samples if drawn.contents.get(s.event_id)]
    answers = judge.label_many(description, [drawn.contents[s.event_id] for s in samples])
    labels = [
        AuditLabel(fitted.name, fitted.version, s.event_id, a.label, judge.labeller, "judge")
        for s, a in zip(samples, answers, strict=True)
        if a.label is not None
    ]
    store_audit_labels(client, labels)
    tally = JudgeTally.of(answers)
    pairs, agreeing = judge_agreement(client, fitted.name)
    return {
        "labeller": judge.labeller,
        "asked": tally.total, "labelled": tally.labelled, "no_label": tally.no_label,
        "unparseable": tally.unparseable, "gave_up": tally.gave_up,
        "agreement_with_people": {"pairs": pairs,
                                  "agreement": agreeing / pairs if pairs else None},
    }  # fmt: skip
