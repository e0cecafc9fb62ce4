"""What happens to detections: the monitor loop and the backtest, the notifiers (generic webhook,
PagerDuty, Slack, several at once), the local alert receiver, and Grafana alert rules as code."""

from __future__ import annotations

from alerts.delivery.backtest import BacktestReport, backtest
from alerts.delivery.fanout import FanOutNotifier, OwesMessages, build_notifier
from alerts.delivery.monitor import CycleReport, Monitor, register_new_releases
from alerts.delivery.notify import Notifier, WebhookNotifier, build_payload, summarize
from alerts.delivery.pagerduty import PagerDutyNotifier, pagerduty_event
from alerts.delivery.prometheus_rules import PROMETHEUS_ALERTS, prometheus_rules_file
from alerts.delivery.receiver import ReceivedAlert, Receiver, render_runbooks
from alerts.delivery.rules import (
    CONTACT_POINT_UID,
    RULE_GROUP,
    RULES,
    AlertingPayloads,
    Route,
    RuleSpec,
    api_payloads,
    provisioning_file,
)
from alerts.delivery.slack import SlackNotifier, slack_message

__all__ = [
    "CONTACT_POINT_UID",
    "PROMETHEUS_ALERTS",
    "RULES",
    "RULE_GROUP",
    "AlertingPayloads",
    "BacktestReport",
    "CycleReport",
    "FanOutNotifier",
    "Monitor",
    "Notifier",
    "OwesMessages",
    "PagerDutyNotifier",
    "ReceivedAlert",
    "Receiver",
    "Route",
    "RuleSpec",
    "SlackNotifier",
    "WebhookNotifier",
    "api_payloads",
    "backtest",
    "build_notifier",
    "build_payload",
    "pagerduty_event",
    "prometheus_rules_file",
    "provisioning_file",
    "register_new_releases",
    "render_runbooks",
    "slack_message",
    "summarize",
]
