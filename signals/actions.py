"""What the guardrail API does with a flag: a spec's :data:`Action` and the request's decision.

Each signal's spec names an action (``block``, ``flag`` or ``log``); the guardrail decides on
one request from the actions of the signals that flagged it (:func:`guardrail_decision`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

__all__ = ["Action", "FlaggedAction", "GuardrailDecision", "guardrail_decision"]

Action = Literal["block", "flag", "log"]
"""A spec's action when its signal flags an event: stop the answer, let it through marked, or
only record the score."""

GuardrailDecision = Literal["block", "flag", "pass"]
"""The guardrail API's answer for one event (its ``verdict`` field)."""


class FlaggedAction(Protocol):
    """One signal applied to one event, as far as the decision needs it."""

    @property
    def flagged(self) -> bool: ...

    @property
    def action(self) -> Action: ...


def guardrail_decision(results: Iterable[FlaggedAction]) -> GuardrailDecision:
    """``block`` if a flagged signal's action is block, else ``flag`` if one's is flag, else
    ``pass`` (``log`` signals are scored and recorded, never acted on)."""
    actions = {r.action for r in results if r.flagged}
    if "block" in actions:
        return "block"
    if "flag" in actions:
        return "flag"
    return "pass"
