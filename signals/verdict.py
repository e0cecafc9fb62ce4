"""Is a fitted signal worth applying? The verdict ``telltale signals add`` acts on.

Two ways a few-shot signal can be useless while looking fine:

* its cross-validated F1 is no better than *flagging everything*, whose F1 is
  ``2p / (1 + p)`` for a positive share ``p`` of the examples (0.67 with 8 + 8 examples): the
  classifier learned nothing the threshold could not fake;
* its threshold flags most of the stored events of its field: a signal that calls half of
  production a failure measures the threshold, not the failure mode.

Either makes the signal *degenerate*. It is refused unless forced, and a forced one carries
the mark (``signals.degenerate``) so detectors can skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

from signals.fitted import FittedSignal

__all__ = ["Verdict", "chance_f1", "judge"]


def chance_f1(n_positive: int, n_negative: int) -> float:
    """F1 of flagging every example, the score a useless classifier gets for free."""
    total = n_positive + n_negative
    if total == 0 or n_positive == 0:
        return 0.0
    p = n_positive / total
    return 2 * p / (1 + p)


@dataclass(frozen=True)
class Verdict:
    degenerate: bool
    reasons: tuple[str, ...]
    cv_f1: float | None
    chance_f1: float
    flag_share: float | None  # of the field's stored events; None when none were scored
    scored_events: int

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, object]:
        return {
            "degenerate": self.degenerate, "reason": self.reason, "cv_f1": self.cv_f1,
            "chance_f1": self.chance_f1, "flag_share": self.flag_share,
            "scored_events": self.scored_events,
        }  # fmt: skip


def judge(
    fitted: FittedSignal,
    flag_share: float | None,
    scored_events: int,
    *,
    min_f1_margin: float = 0.1,
    max_flag_share: float = 0.5,
) -> Verdict:
    """The verdict on ``fitted`` given the share of stored events its threshold flags.

    A zero-shot signal without labelled examples has no F1; only the flag share judges it.
    """
    reasons = []
    chance = chance_f1(fitted.n_positive, fitted.n_negative)
    f1 = fitted.metrics.get("f1")
    if f1 is not None and f1 < chance + min_f1_margin:
        reasons.append(
            f"cross-validated F1 {f1:.2f} is not clearly above chance: flagging every example "
            f"scores {chance:.2f} with {fitted.n_positive}+{fitted.n_negative} examples "
            f"(required: at least {chance + min_f1_margin:.2f})"
        )
    if flag_share is not None and flag_share > max_flag_share:
        reasons.append(
            f"threshold {fitted.threshold:.3g} flags {flag_share:.0%} of {scored_events} stored "
            f"{fitted.field} events (allowed: at most {max_flag_share:.0%})"
        )
    return Verdict(bool(reasons), tuple(reasons), f1, chance, flag_share, scored_events)
