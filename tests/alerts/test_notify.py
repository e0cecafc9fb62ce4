"""The webhook notifier against a real HTTP server on 127.0.0.1: payload formats, bounded retries,
and secrets (URL, routing key) that never reach a log line or an error message."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import timedelta
from typing import Any

import pytest
from alerts_seed import T0, traffic, webhook_server
from pydantic import SecretStr

from alerts.delivery.monitor import Monitor
from alerts.delivery.notify import WebhookNotifier, build_payload
from alerts.errors import NotifyError
from alerts.settings import MonitorConfig, NotifyConfig
from storage.detections import DetectionRow, list_detections

SECRET = "T000-s3cr3t-B111"
ROUTING_KEY = "R0UT1NG-k3y-9999"

ROW = DetectionRow(
    detection_id="abc123",
    detector="release_spike",
    key="model=chat/v2/signal=stock_advice",
    model="chat",
    model_version="v2",
    signal="stock_advice",
    state="firing",
    opened_at=T0,
    resolved_at=None,
    statistic=150.0,
    threshold=100.0,
    p_value=0.006,
    e_value=150.0,
    effect=0.06,
    effect_low=0.01,
    effect_high=0.11,
    details={"baseline_version": "v1", "released_at": T0.isoformat()},
)


def _settings(url: str, **overrides: object) -> NotifyConfig:
    values: dict[str, object] = {
        "webhook_url": SecretStr(url), "backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0,
    }  # fmt: skip
    values.update(overrides)
    return NotifyConfig.model_validate(values)


def test_payload_formats() -> None:
    generic = build_payload("generic", "trigger", ROW)
    assert generic["event"] == "firing" and generic["detection_id"] == "abc123"
    assert generic["detection"]["effect"] == pytest.approx(0.06)
    assert "+6.00 pp" in generic["summary"] and "v1" in generic["summary"]

    slack = build_payload("slack", "resolve", ROW)
    assert slack["text"].startswith("[telltale] RESOLVED release_spike")
    # The same message as SlackNotifier's (tests/test_paging.py checks it against Block Kit).
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "section", "section",
                                                    "context"]  # fmt: skip
    assert all(f["type"] == "mrkdwn" for f in slack["blocks"][2]["fields"])

    trigger = build_payload("pagerduty", "trigger", ROW, routing_key="rk", severity="critical")
    assert trigger["routing_key"] == "rk" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "abc123"
    assert set(trigger["payload"]) >= {"summary", "severity", "source"}
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "telltale"
    resolve = build_payload("pagerduty", "resolve", ROW, routing_key="rk")
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": "abc123"}


def test_retries_on_500_then_succeeds_without_leaking_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    waits: list[float] = []
    with webhook_server() as hook:
        hook.statuses = [500, 503, 200]
        settings = _settings(
            hook.url(f"/hooks/{SECRET}"), format="pagerduty", routing_key=SecretStr(ROUTING_KEY)
        )
        notifier = WebhookNotifier(settings, sleep=waits.append)
        notifier.send("trigger", ROW)
    assert len(hook.requests) == 3 and hook.paths == [f"/hooks/{SECRET}"] * 3
    assert hook.requests[-1]["routing_key"] == ROUTING_KEY  # it is sent, just never logged
    assert waits == [0.01, 0.02]  # exponential back-off
    assert "attempt 1/5" in caplog.text and "HTTP 500" in caplog.text
    for secret in (SECRET, ROUTING_KEY):
        assert secret not in caplog.text
        assert secret not in repr(settings) and secret not in repr(notifier)


def test_gives_up_after_bounded_attempts_and_does_not_retry_4xx() -> None:
    waits: list[float] = []
    with webhook_server() as hook:
        hook.statuses = [502] * 10
        notifier = WebhookNotifier(_settings(hook.url(), max_attempts=4), sleep=waits.append)
        with pytest.raises(NotifyError) as failed:
            notifier.send("trigger", ROW)
        assert failed.value.retryable and len(hook.requests) == 4
        assert waits == [0.01, 0.02, 0.04]
        hook.statuses = [400]
        with pytest.raises(NotifyError) as rejected:
            notifier.send("trigger", ROW)
        assert not rejected.value.retryable and len(hook.requests) == 5


def test_shutdown_interrupts_the_back_off() -> None:
    stop = threading.Event()
    stop.set()
    with webhook_server() as hook:
        hook.statuses = [500] * 5
        notifier = WebhookNotifier(_settings(hook.url(), backoff_s=30.0), sleep=stop.wait)
        with pytest.raises(NotifyError, match="interrupted"):
            notifier.send("trigger", ROW)
    assert len(hook.requests) == 1


def test_unreachable_receiver_error_names_no_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/{SECRET}"
    notifier = WebhookNotifier(_settings(url, max_attempts=2), sleep=lambda _: None)
    with pytest.raises(NotifyError) as failed:
        notifier.send("trigger", ROW)
    assert failed.value.retryable
    assert SECRET not in str(failed.value) and SECRET not in caplog.text
    assert str(port) not in str(failed.value)


def test_rejects_non_http_urls_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="must be an http") as bad:
        WebhookNotifier(_settings(f"file:///etc/{SECRET}"))
    assert SECRET not in str(bad.value)


def test_monitor_keeps_unsent_pages_until_the_receiver_is_back(
    ch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that is down costs a retry next cycle, not a lost page and not a duplicate."""
    caplog.set_level(logging.DEBUG)
    traffic(ch, model="chat", version="v1", start=T0, minutes=90, per_minute=30, rate=0.02, seed=1)
    traffic(ch, model="chat", version="v2", start=T0 + timedelta(minutes=30), minutes=60,
            per_minute=30, rate=0.15, seed=2)  # fmt: skip
    settings = MonitorConfig(lookback_minutes=300, settle_s=0)
    with webhook_server() as hook:
        hook.statuses = [500] * 3  # the whole first cycle's budget
        notify = _settings(hook.url(f"/hooks/{SECRET}"), max_attempts=3)
        monitor = Monitor(ch, settings, WebhookNotifier(notify, sleep=lambda _: None), notify)
        first = monitor.run_once(now=T0 + timedelta(minutes=60))
        assert first.engine.opened and first.notification_failures == 1
        assert [d.notified for d in list_detections(ch)] == [""]
        second = monitor.run_once(now=T0 + timedelta(minutes=61))
        third = monitor.run_once(now=T0 + timedelta(minutes=62))
    assert (second.notifications_sent, third.notifications_sent) == (1, 0)
    assert len(hook.requests) == 4 and hook.requests[-1]["event"] == "firing"
    assert [d.notified for d in list_detections(ch)] == ["firing"]
    assert SECRET not in caplog.text
