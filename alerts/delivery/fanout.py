"""Several notifiers at once: PagerDuty, Slack and the generic webhook each get every message.

One failing notifier never stops the others, and never costs them a duplicate:

* a message every notifier failed to deliver raises :class:`NotifyError`, so the monitor keeps
  the detection un-notified and sends it again next cycle, as with a single notifier;
* a message some notifiers delivered counts as sent; each notifier that failed with a retryable
  error (429, 5xx, network, shutdown) *owes* it: owed messages are resent, oldest first, before
  that notifier's next message and at the start of every monitor cycle (:meth:`retry_owed`), so
  a trigger is never overtaken by its resolve;
* a message a notifier rejected (a 4xx other than 429: a wrong key or URL, an invalid payload)
  is logged as an error and not resent: sending it again cannot succeed.

Owed messages are held in memory (at most ``owed_limit`` per notifier; the oldest is dropped,
with an error logged, beyond that) and, with a :class:`OwedLedger` (:meth:`FanOutNotifier.keep_in`;
the monitor gives it one over ClickHouse, :mod:`storage.owed`), written down as they are owed
and settled, so a monitor that restarts while one service is down still resends to it what the
others delivered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, runtime_checkable

from alerts.delivery.incident import Action
from alerts.delivery.notify import Notifier, WebhookNotifier
from alerts.delivery.pagerduty import PagerDutyNotifier
from alerts.delivery.slack import SlackNotifier
from alerts.errors import NotifyError
from alerts.settings import NotifyConfig
from storage import DetectionRow

__all__ = ["FanOutNotifier", "OwedLedger", "OwesMessages", "build_notifier"]

log = logging.getLogger(__name__)

OWED_LIMIT = 1_000


@runtime_checkable
class OwesMessages(Protocol):
    """A notifier that keeps undelivered messages to resend (the monitor calls this each cycle)."""

    def retry_owed(self) -> int: ...


class OwedLedger(Protocol):
    """Where owed messages are written down, to outlive the process."""

    def owe(self, notifier: str, action: Action, detection: DetectionRow) -> None: ...

    def settle(self, notifier: str, action: Action, detection: DetectionRow) -> None: ...

    def owed(self) -> Iterable[tuple[str, Action, DetectionRow]]:
        """What is still owed, oldest first."""
        ...


class FanOutNotifier:
    """Deliver each message to every named notifier (see the module docstring)."""

    def __init__(self, notifiers: Mapping[str, Notifier], *, owed_limit: int = OWED_LIMIT) -> None:
        if not notifiers:
            raise ValueError("a fan-out needs at least one notifier")
        self._notifiers = dict(notifiers)
        self._owed: dict[str, deque[tuple[Action, DetectionRow]]] = {n: deque() for n in notifiers}
        self._limit = owed_limit
        self._ledger: OwedLedger | None = None

    def keep_in(self, ledger: OwedLedger) -> int:
        """Write owed messages down in ``ledger`` from now on, and take back what it holds
        (owed before a restart) for the notifiers this fan-out still has; returns how many."""
        self._ledger = ledger
        taken = 0
        for name, action, detection in ledger.owed():
            if name not in self._owed:  # a notifier no longer configured: nothing to send with
                ledger.settle(name, action, detection)
                continue
            if (action, detection) not in self._owed[name]:
                self._owed[name].append((action, detection))
                taken += 1
        return taken

    def __repr__(self) -> str:
        return f"FanOutNotifier({', '.join(self._notifiers)})"

    def owed(self) -> dict[str, int]:
        """How many messages each notifier still owes."""
        return {name: len(q) for name, q in self._owed.items()}

    def send(self, action: Action, detection: DetectionRow) -> None:
        delivered: list[str] = []
        failed: list[tuple[str, NotifyError]] = []
        for name, notifier in self._notifiers.items():
            try:
                self._settle(name, notifier)
                notifier.send(action, detection)
                delivered.append(name)
            except NotifyError as error:
                failed.append((name, error))
        if not failed:
            return
        what = f"{action} {detection.detector} {detection.detection_id}"
        if not delivered:
            raise NotifyError(
                f"no notifier delivered {what}: "
                + "; ".join(f"{name}: {exc}" for name, exc in failed),
                retryable=any(exc.retryable for _, exc in failed),
            )
        for name, exc in failed:
            if exc.retryable:
                self._owe(name, action, detection)
                log.error("%s did not deliver %s (%s delivered it): %s; resending later",
                          name, what, ", ".join(delivered), exc)  # fmt: skip
            else:
                log.error("%s rejected %s (%s delivered it): %s; not resent",
                          name, what, ", ".join(delivered), exc)  # fmt: skip

    def retry_owed(self) -> int:
        """Resend what each notifier owes; returns how many messages are still owed."""
        for name, notifier in self._notifiers.items():
            if not self._owed[name]:
                continue
            try:
                self._settle(name, notifier)
            except NotifyError as exc:
                log.warning("%s still owes %d message(s): %s", name, len(self._owed[name]), exc)
        return sum(len(q) for q in self._owed.values())

    def _settle(self, name: str, notifier: Notifier) -> None:
        """Send what ``notifier`` owes, oldest first; a retryable failure stops and raises."""
        owed = self._owed[name]
        while owed:
            action, row = owed[0]
            try:
                notifier.send(action, row)
            except NotifyError as exc:
                if exc.retryable:
                    raise
                log.error("%s rejected owed %s of %s: %s; not resent",
                          name, action, row.detection_id, exc)  # fmt: skip
            owed.popleft()
            if self._ledger is not None:
                self._ledger.settle(name, action, row)

    def _owe(self, name: str, action: Action, detection: DetectionRow) -> None:
        owed = self._owed[name]
        if len(owed) >= self._limit:
            action_lost, lost = owed.popleft()
            log.error("%s owes more than %d messages: dropped %s of %s",
                      name, self._limit, action_lost, lost.detection_id)  # fmt: skip
            if self._ledger is not None:
                self._ledger.settle(name, action_lost, lost)
        owed.append((action, detection))
        if self._ledger is not None:
            self._ledger.owe(name, action, detection)


def build_notifier(
    settings: NotifyConfig,
    *,
    sleep: Callable[[float], object] = time.sleep,
    severities: Mapping[str, str] | None = None,
    runbook_base_url: str | None = None,
) -> Notifier | None:
    """The notifiers ``settings`` turn on: None, the one, or a :class:`FanOutNotifier` over them.

    PagerDuty goes first (it pages a person), then Slack, then the generic webhook. Raises
    ``ValueError`` naming the setting (never its value) when one is malformed.
    """
    found: dict[str, Notifier] = {}
    if settings.pagerduty_routing_key is not None:
        found["pagerduty"] = PagerDutyNotifier(
            settings, sleep=sleep, severities=severities, runbook_base_url=runbook_base_url
        )
    if settings.slack_webhook_url is not None:
        found["slack"] = SlackNotifier(settings, sleep=sleep, runbook_base_url=runbook_base_url)
    if settings.enabled:
        found["webhook"] = WebhookNotifier(
            settings, sleep=sleep, severities=severities, runbook_base_url=runbook_base_url
        )
    if not found:
        return None
    if len(found) == 1:
        return next(iter(found.values()))
    return FanOutNotifier(found)
