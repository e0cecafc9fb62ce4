"""The webhook notifier: one JSON POST per firing and one per resolve, with bounded retries.

Three payload formats:

* ``generic`` — ``{"event": "firing"|"resolved", "summary": ..., "detection": {...row...}}``;
* ``slack`` — an incoming-webhook message: ``text`` (the fallback and notification line) and
  ``blocks`` (a header, the summary, the numbers as fields, a context line with the key);
* ``pagerduty`` — an Events API v2 event: ``routing_key``, ``event_action`` ``trigger`` or
  ``resolve``, ``dedup_key`` = the detection id (so PagerDuty itself folds a repeated trigger of
  the same detection into one incident), and for a trigger ``payload.summary/severity/source``.

Delivery is at least once: the monitor marks a detection as notified only after the receiver
answered 2xx, so a crash between the two sends it again on restart (PagerDuty deduplicates by
``dedup_key``; the generic payload carries ``detection_id`` for receivers that want to).

The URL and the routing key are secrets: they are never logged, and the errors raised here say
what went wrong (an HTTP status, an exception type) without them. The HTTP client is the
standard library's, which — unlike httpx — logs nothing about the requests it sends.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from alerts.errors import NotifyError
from alerts.settings import NotifySettings
from storage import DetectionRow, json_safe

__all__ = ["Action", "Notifier", "WebhookNotifier", "build_payload", "summarize"]

log = logging.getLogger(__name__)

Action = Literal["trigger", "resolve"]

_SLACK_TEXT_LIMIT = 3000  # a section block's text limit
_PD_SUMMARY_LIMIT = 1024  # PagerDuty truncates longer summaries


class Notifier(Protocol):
    """Something that delivers one message about one detection, or raises :class:`NotifyError`."""

    def send(self, action: Action, detection: DetectionRow) -> None: ...


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.2f} pp" if signed else f"{value:.2%}"


def _where(localization: object) -> str:
    """``; concentrated in locale=de & customer_tier=free (82% of the excess, 31.0% vs 4.9%)``."""
    if not isinstance(localization, dict):
        return ""
    slices = localization.get("slices")
    if not isinstance(slices, list) or not slices or not isinstance(slices[0], dict):
        return ""
    top = slices[0]
    share, rate, base = top.get("share_of_excess"), top.get("rate"), top.get("baseline_rate")
    numbers = []
    if isinstance(share, float):
        numbers.append(f"{share:.0%} of the excess")
    if isinstance(rate, float) and isinstance(base, float):
        numbers.append(f"{rate:.1%} vs {base:.1%}")
    suffix = f" ({', '.join(numbers)})" if numbers else ""
    return f"; concentrated in {top.get('slice', '?')}{suffix}"


def summarize(action: Action, d: DetectionRow) -> str:
    """One line an on-call engineer can act on: what, where, how big, and the evidence."""
    details = d.details
    where = " ".join(part for part in (d.model, d.model_version) if part)
    if d.detector == "release_spike":
        text = (
            f"{where}: {d.signal} failure rate {_pct(d.effect)} vs "
            f"{details.get('baseline_version', 'the previous version')} since release "
            f"(always-valid CS [{_pct(d.effect_low)}, {_pct(d.effect_high)}]; "
            f"e-value {d.statistic:.3g} >= {d.threshold:.3g})"
        )
        text += _where(details.get("localization"))
    elif d.detector == "degradation":
        p0, rate = details.get("p0"), details.get("rate_since_change")
        text = (
            f"{where}: {d.signal} failure rate crept from "
            f"{_pct(p0 if isinstance(p0, float) else None, False)} to "
            f"{_pct(rate if isinstance(rate, float) else None, False)} "
            f"(CUSUM {d.statistic:.2f} >= {d.threshold:.2f})"
        )
    elif d.detector == "prompt_drift":
        text = f"{where}: prompts drifted from the reference window (p = {d.statistic:.2g} <= "
        text += f"{d.threshold:.2g})"
        clusters = details.get("clusters")
        if isinstance(clusters, list) and clusters and isinstance(clusters[0], dict):
            top = clusters[0]
            examples = top.get("recent_examples") or []
            text += f"; largest growth {_pct(top.get('change'))} in prompts like "
            text += "; ".join(repr(str(e)[:80]) for e in examples[:2]) or "(no text)"
    else:
        text = f"{where}: {d.key} statistic {d.statistic:.3g} vs threshold {d.threshold:.3g}"
    state = "RESOLVED" if action == "resolve" else "FIRING"
    return f"[telltale] {state} {d.detector}: {text}"


def build_payload(
    fmt: Literal["generic", "slack", "pagerduty"],
    action: Action,
    detection: DetectionRow,
    *,
    routing_key: str = "",
    severity: str = "error",
    source: str = "telltale",
) -> dict[str, Any]:
    """The JSON body for one message in the given format (see the module docstring)."""
    summary = summarize(action, detection)
    row = detection.as_dict()
    if fmt == "generic":
        return {
            "event": "firing" if action == "trigger" else "resolved",
            "summary": summary,
            "severity": severity,
            "detection_id": detection.detection_id,
            "detection": row,
        }
    if fmt == "slack":
        fields = [
            f"*detector*\n{detection.detector}",
            f"*model*\n{detection.model} {detection.model_version}".rstrip(),
            f"*opened*\n{row['opened_at']}",
            f"*statistic / threshold*\n{detection.statistic:.4g} / {detection.threshold:.4g}",
        ]
        if detection.signal:
            fields.insert(2, f"*signal*\n{detection.signal}")
        if row["resolved_at"]:
            fields.append(f"*resolved*\n{row['resolved_at']}")
        header = "Resolved" if action == "resolve" else "Firing"
        return {
            "text": summary,
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": f"telltale: {header.lower()}"},
                },
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": summary[:_SLACK_TEXT_LIMIT]},
                    "fields": [{"type": "mrkdwn", "text": f} for f in fields[:10]],
                },
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"`{detection.key}` · {detection.detection_id}"}
                    ],
                },
            ],
        }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": detection.detection_id,
    }
    if action == "trigger":
        event["payload"] = {
            "summary": summary[:_PD_SUMMARY_LIMIT],
            "severity": severity,
            "source": source,
            "timestamp": row["opened_at"],
            "component": detection.model or "telltale",
            "group": detection.detector,
            "class": detection.signal or detection.detector,
            "custom_details": json_safe(row),
        }
    return event


class WebhookNotifier:
    """POST JSON to a webhook; retry 5xx, 429 and network errors with exponential back-off.

    Attempt ``i`` (from 0) that fails is retried after ``min(backoff_s * 2**i, backoff_max_s)``
    seconds (or the server's ``Retry-After``, capped the same way), at most ``max_attempts``
    attempts in all; then :class:`NotifyError` is raised. Any other 4xx answer is not retried.
    ``sleep`` is injectable so tests need not wait; a sleep that returns true (such as
    ``threading.Event().wait`` when the event is set on shutdown) abandons the delivery.
    """

    def __init__(
        self,
        settings: NotifySettings,
        *,
        sleep: Callable[[float], object] = time.sleep,
        severities: Mapping[str, str] | None = None,
    ) -> None:
        url = settings.url()
        if urlsplit(url).scheme not in ("http", "https"):
            # Say which setting is wrong, not its value.
            raise ValueError("TELLTALE_NOTIFY_WEBHOOK_URL must be an http(s) URL")
        if settings.format == "pagerduty" and settings.routing_key is None:
            raise ValueError("the pagerduty format needs TELLTALE_NOTIFY_ROUTING_KEY")
        self._settings = settings
        self._sleep = sleep
        # Per signal (group) paging severity, e.g. {"safety-critical": "critical"}.
        self._severities = dict(severities or {})
        self.sent = 0

    def __repr__(self) -> str:  # never the URL
        return f"WebhookNotifier(format={self._settings.format!r})"

    def send(self, action: Action, detection: DetectionRow) -> None:
        s = self._settings
        payload = build_payload(
            s.format,
            action,
            detection,
            routing_key=s.routing_key.get_secret_value() if s.routing_key else "",
            severity=self._severities.get(detection.signal, s.severity),
            source=s.source,
        )
        body = json.dumps(payload, allow_nan=False).encode()
        what = f"{action} {detection.detector} {detection.detection_id}"
        for attempt in range(s.max_attempts):
            failure, retry_after = self._post(body)
            if failure is None:
                self.sent += 1
                log.info("webhook (%s) delivered %s", s.format, what)
                return
            if not failure.retryable or attempt + 1 == s.max_attempts:
                raise NotifyError(
                    f"webhook ({s.format}) could not deliver {what} after {attempt + 1} "
                    f"attempt(s): {failure}",
                    retryable=failure.retryable,
                )
            delay = min(s.backoff_s * 2**attempt, s.backoff_max_s)
            if retry_after is not None:
                delay = min(max(delay, retry_after), s.backoff_max_s)
            log.warning(
                "webhook (%s) attempt %d/%d for %s failed: %s; retrying in %.2f s",
                s.format, attempt + 1, s.max_attempts, what, failure, delay,
            )  # fmt: skip
            if self._sleep(delay):
                raise NotifyError(f"delivery of {what} interrupted by shutdown", retryable=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: bytes) -> tuple[NotifyError | None, float | None]:
        """One attempt: ``(None, None)`` on a 2xx answer, else the failure and any Retry-After."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._settings.url(),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "telltale-monitor"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._settings.timeout_s) as answer:  # noqa: S310
                answer.read()
                return None, None
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            retryable = status >= 500 or status == 429
            return NotifyError(f"HTTP {status}", retryable=retryable), retry_after
        except (urllib.error.URLError, OSError) as exc:
            # Only the exception type: some carry the address they failed to reach.
            return NotifyError(type(exc).__name__, retryable=True), None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
