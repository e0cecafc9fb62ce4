"""What happens to detections: the monitor loop and the backtest, the webhook notifier, the
local alert receiver, and Grafana alert rules as code."""

from __future__ import annotations

from alerts.delivery.backtest import BacktestReport, backtest
from alerts.delivery.monitor import CycleReport, Monitor, register_new_releases
from alerts.delivery.notify import Notifier, WebhookNotifier, build_payload, summarize
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

__all__ = [
    "CONTACT_POINT_UID",
    "PROMETHEUS_ALERTS",
    "RULES",
    "RULE_GROUP",
    "AlertingPayloads",
    "BacktestReport",
    "CycleReport",
    "Monitor",
    "Notifier",
    "ReceivedAlert",
    "Receiver",
    "Route",
    "RuleSpec",
    "WebhookNotifier",
    "api_payloads",
    "backtest",
    "build_payload",
    "prometheus_rules_file",
    "provisioning_file",
    "register_new_releases",
    "render_runbooks",
    "summarize",
]
