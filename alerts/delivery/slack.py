"""Slack incoming webhooks: one Block Kit message when a detection fires, one when it resolves.

``POST`` ``{"text": ..., "blocks": [...]}`` to the webhook URL
(``TELLTALE_NOTIFY_SLACK_WEBHOOK_URL``: the URL is the credential, a secret). ``text`` is the
one-line summary, which Slack shows in notifications and where blocks cannot be rendered; the
blocks are a header (firing or resolved, the signal and the model), the summary, the facts as
fields (signal, model, versions baseline → new, detector, opened, resolved), the rates with
their intervals, the top slice, and links to the detector's runbook section and the Grafana
dashboard. Links are mrkdwn links rather than buttons: a button in a webhook message needs an
app with interactivity to acknowledge its click.

Block Kit limits are kept by construction (a header's plain text ≤ 150 characters, a section's
text ≤ 3000, ≤ 10 fields of ≤ 2000, ≤ 10 context elements, ≤ 50 blocks); text from the data is
escaped for mrkdwn (``&``, ``<``, ``>``).

Answers: Slack replies 200 ``ok``; a 4xx carries a short reason (``invalid_payload``,
``no_service``, ``channel_not_found``, ...) and is not retried; 429 and 5xx are retried with
back-off, honouring ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from alerts.delivery.http import JsonPoster, check_http_url
from alerts.delivery.incident import (
    Action,
    rate_lines,
    rule_uid,
    runbook_url,
    signals_of,
    summarize,
    top_slice_text,
    versions_text,
)
from alerts.settings import NotifyConfig
from storage import DetectionRow

__all__ = ["SlackNotifier", "slack_message"]

HEADER_LIMIT = 150
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = TEXT_LIMIT) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(text, limit)}


def _section(title: str, lines: list[str]) -> dict[str, Any]:
    body = "\n".join(f"• {_escape(line)}" for line in lines)
    return {"type": "section", "text": _mrkdwn(f"*{title}*\n{body}")}


def slack_message(
    action: Action,
    d: DetectionRow,
    *,
    runbook_base_url: str | None = None,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """The incoming-webhook body for one firing or resolved detection (module docstring)."""
    firing = action == "trigger"
    summary = summarize(action, d)
    what = ", ".join(signals_of(d)) or d.detector.replace("_", " ")
    where = " ".join(p for p in (d.model, d.model_version) if p)
    state = ":rotating_light: Firing" if firing else ":white_check_mark: Resolved"
    header = f"{state}: {what}" + (f" on {where}" if where else "")
    row = d.as_dict()
    fields = [
        f"*Signal*\n{_escape(what)}",
        f"*Model*\n{_escape(d.model or 'all models')}",
        f"*Versions*\n{_escape(versions_text(d))}",
        f"*Detector*\n{d.detector}",
        f"*Opened*\n{row['opened_at']}",
    ]
    if row["resolved_at"]:
        reason = d.details.get("resolve_reason")
        fields.append(f"*Resolved*\n{row['resolved_at']}"
                      + (f" ({_escape(str(reason))})" if reason else ""))  # fmt: skip
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _clip(header, HEADER_LIMIT), "emoji": True}},
        {"type": "section", "text": _mrkdwn(_escape(summary))},
        {"type": "section", "fields": [_mrkdwn(f, FIELD_LIMIT) for f in fields]},
        _section("Rates" if firing else "Rates when it resolved", rate_lines(d)),
    ]  # fmt: skip
    top = top_slice_text(d)
    if top:
        blocks.append(_section("Top slice", [top]))
    links = []
    if runbook_base_url:
        runbook = runbook_url(runbook_base_url, d.detector)
        links.append(f"<{runbook}|Runbook: {rule_uid(d.detector)}>")
    if dashboard_url:
        links.append(f"<{dashboard_url}|Grafana dashboard>")
    context = [_mrkdwn(f"`{_escape(d.key)}` · detection {d.detection_id}")]
    if links:
        blocks.append({"type": "section", "text": _mrkdwn(" · ".join(links))})
    blocks.append({"type": "context", "elements": context})
    return {"text": _clip(_escape(summary), TEXT_LIMIT), "blocks": blocks}


def _reason(body: bytes) -> str:
    """Slack's error answers are one short string (``invalid_payload``, ``no_service``)."""
    return body.decode("utf-8")


class SlackNotifier:
    """Post firing and resolved messages to a Slack incoming webhook (retries as
    :class:`~alerts.delivery.http.JsonPoster`)."""

    def __init__(
        self,
        settings: NotifyConfig,
        *,
        sleep: Callable[[float], object] = time.sleep,
        runbook_base_url: str | None = None,
    ) -> None:
        if settings.slack_webhook_url is None:
            raise ValueError("Slack needs TELLTALE_NOTIFY_SLACK_WEBHOOK_URL")
        url = settings.slack_webhook_url.get_secret_value()
        check_http_url(url, "TELLTALE_NOTIFY_SLACK_WEBHOOK_URL")
        self._settings = settings
        self._runbook_base_url = runbook_base_url
        self._poster = JsonPoster(
            "slack", settings.slack_webhook_url.get_secret_value, settings, sleep=sleep,
            secrets=(url, urlsplit(url).path), describe=_reason,
        )  # fmt: skip

    def __repr__(self) -> str:  # never the URL
        return "SlackNotifier()"

    @property
    def sent(self) -> int:
        return self._poster.sent

    def send(self, action: Action, detection: DetectionRow) -> None:
        message = slack_message(
            action, detection, runbook_base_url=self._runbook_base_url,
            dashboard_url=self._settings.dashboard_url,
        )  # fmt: skip
        self._poster.post(message, f"{action} {detection.detector} {detection.detection_id}")
