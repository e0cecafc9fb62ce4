"""The generic webhook notifier and the protocol every notifier keeps.

Three payload formats:

* ``generic`` — ``{"event": "firing"|"resolved", "summary": ..., "detection": {...row...}}``;
* ``slack`` — the message :class:`~alerts.delivery.slack.SlackNotifier` sends;
* ``pagerduty`` — the event :class:`~alerts.delivery.pagerduty.PagerDutyNotifier` sends.

The last two predate the dedicated notifiers and are kept for existing deployments; the
dedicated ones add the service's error reasons and can run beside the webhook
(:func:`alerts.delivery.fanout.build_notifier`).

Delivery is at least once: the monitor marks a detection as notified only after the receiver
answered 2xx, so a crash between the two sends it again on restart (PagerDuty deduplicates by
``dedup_key``; the generic payload carries ``detection_id`` for receivers that want to).

The URL and the routing key are secrets: they are never logged, and the errors raised here say
what went wrong (an HTTP status, an exception type) without them
(:class:`~alerts.delivery.http.JsonPoster` does the POSTs and the retries).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from alerts.delivery.http import JsonPoster, check_http_url
from alerts.delivery.incident import Action, paging_severity, summarize
from alerts.delivery.pagerduty import pagerduty_event
from alerts.delivery.slack import slack_message
from alerts.settings import NotifyConfig
from storage import DetectionRow

__all__ = ["Action", "Notifier", "WebhookNotifier", "build_payload", "summarize"]


class Notifier(Protocol):
    """Something that delivers one message about one detection, or raises :class:`NotifyError`."""

    def send(self, action: Action, detection: DetectionRow) -> None: ...


def build_payload(
    fmt: Literal["generic", "slack", "pagerduty"],
    action: Action,
    detection: DetectionRow,
    *,
    routing_key: str = "",
    severity: Literal["critical", "error", "warning", "info"] = "error",
    source: str = "telltale",
    runbook_base_url: str | None = None,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """The JSON body for one message in the given format (see the module docstring)."""
    if fmt == "slack":
        return slack_message(
            action, detection, runbook_base_url=runbook_base_url, dashboard_url=dashboard_url
        )
    if fmt == "pagerduty":
        return pagerduty_event(
            action, detection, routing_key=routing_key, severity=severity, source=source,
            runbook_base_url=runbook_base_url, dashboard_url=dashboard_url,
        )  # fmt: skip
    return {
        "event": "firing" if action == "trigger" else "resolved",
        "summary": summarize(action, detection),
        "severity": severity,
        "detection_id": detection.detection_id,
        "detection": detection.as_dict(),
    }


class WebhookNotifier:
    """POST JSON to a webhook; retries as :class:`~alerts.delivery.http.JsonPoster` (5xx, 429 and
    network errors with exponential back-off and ``Retry-After``; no retry of other 4xx).

    ``sleep`` is injectable so tests need not wait; a sleep that returns true (such as
    ``threading.Event().wait`` when the event is set on shutdown) abandons the delivery.
    """

    def __init__(
        self,
        settings: NotifyConfig,
        *,
        sleep: Callable[[float], object] = time.sleep,
        severities: Mapping[str, str] | None = None,
        runbook_base_url: str | None = None,
    ) -> None:
        check_http_url(settings.url(), "TELLTALE_NOTIFY_WEBHOOK_URL")
        if settings.format == "pagerduty" and settings.routing_key is None:
            raise ValueError("the pagerduty format needs TELLTALE_NOTIFY_ROUTING_KEY")
        self._settings = settings
        # Per signal (group) paging severity, e.g. {"safety-critical": "critical"}.
        self._severities = dict(severities or {})
        self._runbook_base_url = runbook_base_url
        key = settings.routing_key.get_secret_value() if settings.routing_key else ""
        self._poster = JsonPoster(
            f"webhook ({settings.format})", settings.url, settings, sleep=sleep,
            secrets=(settings.url(), key),
        )  # fmt: skip

    def __repr__(self) -> str:  # never the URL
        return f"WebhookNotifier(format={self._settings.format!r})"

    @property
    def sent(self) -> int:
        return self._poster.sent

    def send(self, action: Action, detection: DetectionRow) -> None:
        s = self._settings
        payload = build_payload(
            s.format, action, detection,
            routing_key=s.routing_key.get_secret_value() if s.routing_key else "",
            severity=paging_severity(detection, self._severities, s.severity),
            source=s.source, runbook_base_url=self._runbook_base_url,
            dashboard_url=s.dashboard_url,
        )  # fmt: skip
        self._poster.post(payload, f"{action} {detection.detector} {detection.detection_id}")
