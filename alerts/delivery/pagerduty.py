"""PagerDuty Events API v2: one ``trigger`` when a detection fires, one ``resolve`` when it ends.

``POST https://events.pagerduty.com/v2/enqueue`` (``TELLTALE_NOTIFY_PAGERDUTY_URL``) with the
integration's ``routing_key`` (``TELLTALE_NOTIFY_PAGERDUTY_ROUTING_KEY``, a secret) and a
``dedup_key`` that is the detection's stored id: a hash of the detector, the tracked key (model,
version, signal) and the opening minute (:func:`alerts.tracks.detection_id`). The same incident
therefore has the same key on its trigger, on its resolve, after a monitor restart and on a
resent trigger, which PagerDuty folds into the open alert.

A trigger carries ``payload`` (``summary`` ≤ 1024 characters, ``source``, ``severity``, an
RFC 3339 UTC ``timestamp`` of the opening, ``component`` = model and version, ``group`` =
model, ``class`` = detector, and ``custom_details`` with the rates, their intervals, the
versions and the top slice), ``client``, and ``links`` to the runbook section of the detector
and to the Grafana dashboard when one is configured. A resolve carries only ``routing_key``,
``event_action`` and ``dedup_key``, as the API documents.

Answers (PagerDuty's documented retry table): 202 is delivered; 400 is an invalid event or key
(not retried; its ``errors`` are logged, without the key); 429 and 5xx are retried with
back-off, honouring ``Retry-After``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from alerts.delivery.http import JsonPoster, check_http_url
from alerts.delivery.incident import (
    Action,
    Severity,
    incident_details,
    paging_severity,
    rule_uid,
    runbook_url,
    summarize,
)
from alerts.settings import NotifyConfig
from storage import DetectionRow

__all__ = ["SUMMARY_LIMIT", "PagerDutyNotifier", "dedup_key", "pagerduty_event"]

SUMMARY_LIMIT = 1024  # PagerDuty's limit on payload.summary
CLIENT = "telltale"


def dedup_key(d: DetectionRow) -> str:
    """The incident's key on every event about it: its stable stored id."""
    return d.detection_id


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pagerduty_event(
    action: Action,
    d: DetectionRow,
    *,
    routing_key: str,
    severity: Severity = "error",
    source: str = "telltale",
    runbook_base_url: str | None = None,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """The Events API v2 body for one trigger or resolve (see the module docstring)."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(d),
    }
    if action == "resolve":
        return event
    runbook = runbook_url(runbook_base_url, d.detector) if runbook_base_url else None
    event["payload"] = {
        "summary": _clip(summarize(action, d), SUMMARY_LIMIT),
        "source": source,
        "severity": severity,
        "timestamp": d.opened_at.astimezone(UTC).isoformat(),
        "component": " ".join(p for p in (d.model, d.model_version) if p) or "telltale",
        "group": d.model or "telltale",
        "class": d.detector,
        "custom_details": incident_details(d, runbook),
    }
    event["client"] = CLIENT
    links = []
    if runbook:
        links.append({"href": runbook, "text": f"Runbook: {rule_uid(d.detector)}"})
    if dashboard_url:
        event["client_url"] = dashboard_url
        links.append({"href": dashboard_url, "text": "Grafana dashboard"})
    if links:
        event["links"] = links
    return event


def _reason(body: bytes) -> str:
    """``Event object is invalid: Length of 'routing_key' is incorrect …`` from a 400's body."""
    answer = json.loads(body)
    if not isinstance(answer, dict):
        return ""
    errors = answer.get("errors")
    parts = [str(answer.get("message") or answer.get("status") or "")]
    if isinstance(errors, list):
        parts.extend(str(e) for e in errors)
    return ": ".join(p for p in parts if p)


class PagerDutyNotifier:
    """Send triggers and resolves to PagerDuty, with the retries of
    :class:`~alerts.delivery.http.JsonPoster`.

    ``severities`` maps a signal (group) to its paging severity, e.g.
    ``{"safety-critical": "critical"}``; other signals page at ``settings.severity``.
    """

    def __init__(
        self,
        settings: NotifyConfig,
        *,
        sleep: Callable[[float], object] = time.sleep,
        severities: Mapping[str, str] | None = None,
        runbook_base_url: str | None = None,
    ) -> None:
        if settings.pagerduty_routing_key is None:
            raise ValueError("PagerDuty needs TELLTALE_NOTIFY_PAGERDUTY_ROUTING_KEY")
        check_http_url(settings.pagerduty_url, "TELLTALE_NOTIFY_PAGERDUTY_URL")
        self._key = settings.pagerduty_routing_key
        self._settings = settings
        self._severities = dict(severities or {})
        self._runbook_base_url = runbook_base_url
        self._poster = JsonPoster(
            "pagerduty", lambda: settings.pagerduty_url, settings, sleep=sleep,
            secrets=(self._key.get_secret_value(),), describe=_reason,
        )  # fmt: skip

    def __repr__(self) -> str:  # never the routing key
        return f"PagerDutyNotifier(source={self._settings.source!r})"

    @property
    def sent(self) -> int:
        return self._poster.sent

    def send(self, action: Action, detection: DetectionRow) -> None:
        s = self._settings
        event = pagerduty_event(
            action, detection, routing_key=self._key.get_secret_value(),
            severity=paging_severity(detection, self._severities, s.severity),
            source=s.source, runbook_base_url=self._runbook_base_url,
            dashboard_url=s.dashboard_url,
        )  # fmt: skip
        what = f"{action} {detection.detector} {dedup_key(detection)}"
        self._poster.post(event, what)
