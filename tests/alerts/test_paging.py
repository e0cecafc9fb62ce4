"""PagerDuty and Slack notifiers against stand-ins on 127.0.0.1 that check every body against
the services' documented schemas (``tests/paging_services.py``): one incident's trigger and
resolve, retries on 429/5xx and none on 4xx, several notifiers at once, and secrets (routing
key, Slack URL) that never reach a log line, a repr or an error."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from alerts_seed import T0, traffic, webhook_server
from paging_services import (
    OPENED,
    PAGERDUTY,
    SLACK,
    incident,
    problems,
    service,
)
from pydantic import SecretStr
from typer.testing import CliRunner

from alerts.delivery.fanout import FanOutNotifier, build_notifier
from alerts.delivery.monitor import Monitor
from alerts.delivery.owed_ledger import ClickHouseOwedLedger
from alerts.delivery.pagerduty import PagerDutyNotifier, pagerduty_event
from alerts.delivery.slack import SlackNotifier, slack_message
from alerts.errors import NotifyError
from alerts.settings import MonitorConfig, NotifyConfig
from storage import DetectionRow
from storage.client import connect
from storage.detections import insert_detections, list_detections
from storage.migrate import migrate
from storage.owed import list_owed
from telltale.cli_alerts import monitor

ROUTING_KEY = "R0UT1NGk3y0000000000000000009999"  # 32 characters, as PagerDuty's keys
SLACK_PATH = "/services/T0000SECRET/B1111SECRET/XXXXs3cr3tTOKEN"
RUNBOOKS = "https://oncall.example.com/runbooks"
DASHBOARD = "https://grafana.example.com/d/telltale-overview"
GROUPS = {"stock_advice": "critical"}
MIN = timedelta(minutes=1)


def _settings(**values: object) -> NotifyConfig:
    base: dict[str, object] = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0,
                               "max_attempts": 3, "dashboard_url": DASHBOARD}  # fmt: skip
    return NotifyConfig.model_validate({**base, **values})


def _pagerduty(url: str, **values: object) -> tuple[PagerDutyNotifier, list[float]]:
    waits: list[float] = []
    settings = _settings(pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=url,
                         **values)  # fmt: skip
    notifier = PagerDutyNotifier(settings, sleep=waits.append, severities=GROUPS,
                                 runbook_base_url=RUNBOOKS)  # fmt: skip
    return notifier, waits


def _slack(url: str, **values: object) -> tuple[SlackNotifier, list[float]]:
    waits: list[float] = []
    settings = _settings(slack_webhook_url=SecretStr(url), **values)
    return SlackNotifier(settings, sleep=waits.append, runbook_base_url=RUNBOOKS), waits


# --- one incident, end to end -----------------------------------------------------------------


def test_pagerduty_trigger_and_resolve_share_the_dedup_key_and_match_the_schema() -> None:
    with service("pagerduty") as pd:
        notifier, waits = _pagerduty(pd.url("/v2/enqueue"))
        notifier.send("trigger", incident("firing"))
        notifier.send("resolve", incident("resolved"))
    assert pd.invalid == [] and waits == [] and notifier.sent == 2
    trigger, resolve = pd.requests
    assert trigger["dedup_key"] == resolve["dedup_key"] == incident().detection_id
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": trigger["dedup_key"]}  # fmt: skip
    payload = trigger["payload"]
    assert payload["severity"] == "critical"  # the signal's group pages at its own severity
    assert payload["timestamp"] == OPENED.isoformat() and payload["source"] == "telltale"
    assert (payload["component"], payload["group"], payload["class"]) == (
        "chat v2",
        "chat",
        "release_spike",
    )
    assert payload["summary"].startswith("[telltale] FIRING release_spike: chat v2: stock_advice")
    details = payload["custom_details"]
    assert details["baseline_version"] == "v1" and details["model_version"] == "v2"
    assert details["rates"] == [
        "stock_advice: v2 7.03% (83/1180) vs v1 1.06% (55/5210); +5.98 pp, "
        "always-valid CS [+2.11 pp, +9.85 pp]"
    ]
    assert details["rate_figures"][0]["difference_interval"] == [0.0211, 0.0985]
    assert details["top_slice"]["slice"] == "customer_tier=free & locale=de"
    assert details["top_slice"]["rate_interval"] == [0.2381, 0.3891]
    assert trigger["links"] == [
        {"href": f"{RUNBOOKS}#telltale-release-spike", "text": "Runbook: telltale-release-spike"},
        {"href": DASHBOARD, "text": "Grafana dashboard"},
    ]
    assert trigger["client"] == "telltale" and trigger["client_url"] == DASHBOARD


def test_slack_firing_and_resolved_messages_match_block_kit() -> None:
    with service("slack") as slack:
        notifier, _ = _slack(slack.url(SLACK_PATH))
        notifier.send("trigger", incident("firing"))
        notifier.send("resolve", incident("resolved"))
    assert slack.invalid == [] and slack.paths == [SLACK_PATH] * 2
    firing, resolved = slack.requests
    header = firing["blocks"][0]["text"]["text"]
    assert header == ":rotating_light: Firing: stock_advice on chat v2"
    assert resolved["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved")
    assert firing["text"].startswith("[telltale] FIRING") and "RESOLVED" in resolved["text"]
    text = "\n".join(_texts(firing))
    for expected in ("*Versions*\nv1 → v2", "*Signal*\nstock_advice", "*Model*\nchat",
                     "*Detector*\nrelease_spike", "7.03% (83/1180) vs v1 1.06% (55/5210)",
                     "always-valid CS [+2.11 pp, +9.85 pp]",
                     "customer_tier=free &amp; locale=de: 30.99% [23.81%, 38.91%] vs 4.92% "
                     "baseline; 82% of the excess",
                     f"<{RUNBOOKS}#telltale-release-spike|Runbook: telltale-release-spike>",
                     f"<{DASHBOARD}|Grafana dashboard>"):  # fmt: skip
        assert expected in text, expected
    assert "*Resolved*\n2026-11-03T16:42:00+00:00 (superseded by a newer release)" in "\n".join(
        _texts(resolved)
    )
    assert " & " not in text and ">=" not in text  # mrkdwn control characters escaped


def _texts(message: dict[str, Any]) -> list[str]:
    out = []
    for block in message["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", []))
        out.extend(e["text"] for e in block.get("elements", []) if "text" in e)
    return out


def test_the_schemas_reject_what_the_services_reject() -> None:
    """The checks have teeth: each documented limit, broken once, is caught."""
    trigger = pagerduty_event("trigger", incident(), routing_key=ROUTING_KEY)
    assert problems(PAGERDUTY, trigger) == []
    broken: list[dict[str, Any]] = []
    cases: list[tuple[tuple[str, ...], str]] = [
        (("payload", "summary"), "x" * 1025), (("payload", "severity"), "high"),
        (("routing_key",), "short"), (("event_action",), "fire"), (("dedup_key",), "k" * 256),
        (("payload", "timestamp"), "yesterday"), (("payload", "timestamp"), "2026-11-03T14:07:00"),
    ]  # fmt: skip
    for path, value in cases:
        event = copy.deepcopy(trigger)
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        broken.append(event)
    broken.append({k: v for k, v in trigger.items() if k != "payload"})  # trigger, no payload
    broken.append({"routing_key": ROUTING_KEY, "event_action": "resolve"})  # no dedup_key
    assert all(problems(PAGERDUTY, event) for event in broken)

    message = slack_message("trigger", incident(), runbook_base_url=RUNBOOKS)
    assert problems(SLACK, message) == []
    too_long = copy.deepcopy(message)
    too_long["blocks"][0]["text"]["text"] = "x" * 151
    mrkdwn_header = copy.deepcopy(message)
    mrkdwn_header["blocks"][0]["text"]["type"] = "mrkdwn"
    many = copy.deepcopy(message)
    many["blocks"] = many["blocks"] * 10
    long_section = copy.deepcopy(message)
    long_section["blocks"][1]["text"]["text"] = "x" * 3001
    eleven = copy.deepcopy(message)
    eleven["blocks"][2]["fields"] = eleven["blocks"][2]["fields"] * 3
    unknown = copy.deepcopy(message)
    unknown["blocks"].append({"type": "table"})
    for bad in (too_long, mrkdwn_header, many, long_section, eleven, unknown):
        assert problems(SLACK, bad)


def _other_detectors() -> list[DetectionRow]:
    base = incident()
    degradation = replace(
        base, detector="degradation", key="model=chat/v2/signal=refusal", signal="refusal",
        statistic=12.4, threshold=9.0, effect=None, effect_low=None, effect_high=None,
        details={"p0": 0.021, "rate_since_change": 0.048, "change_at": "2026-11-03T11:00:00+00:00"},
    )  # fmt: skip
    drift = replace(
        base, detector="prompt_drift", key="model=chat", model_version="", signal="",
        statistic=0.0008, threshold=0.005, effect=0.12,
        details={"clusters": [{"change": 0.12, "recent_examples": ["stock tips <now> & more"]}]},
    )  # fmt: skip
    bare = replace(base, detector="new_detector", model="", model_version="", signal="", details={})
    return [degradation, drift, bare]


@pytest.mark.parametrize("row", _other_detectors(), ids=lambda r: r.detector)
def test_every_detector_pages_valid_messages(row: DetectionRow) -> None:
    for action in ("trigger", "resolve"):
        event = pagerduty_event(action, row, routing_key=ROUTING_KEY, runbook_base_url=RUNBOOKS)
        message = slack_message(action, row, runbook_base_url=RUNBOOKS, dashboard_url=DASHBOARD)
        assert problems(PAGERDUTY, event) == [] and problems(SLACK, message) == []
    rates = pagerduty_event("trigger", row, routing_key=ROUTING_KEY)["payload"]["custom_details"]
    expected = {
        "degradation": "refusal: expected 2.10%, observed 4.80% since 2026-11-03T11:00:00+00:00",
        "prompt_drift": "prompts: p = 0.0008 <= 0.005; largest cluster change +12.00 pp",
        "new_detector": "model=chat/v2: statistic 412.7 vs threshold 200",
    }[row.detector]
    assert rates["rates"][0].startswith(expected)


def test_long_texts_are_cut_to_the_documented_limits() -> None:
    row = incident()
    long = type(row)(**{**row.__dict__, "model": "m" * 2000, "signal": "s" * 2000})
    event = pagerduty_event("trigger", long, routing_key=ROUTING_KEY)
    message = slack_message("trigger", long)
    assert problems(PAGERDUTY, event) == [] and problems(SLACK, message) == []
    assert len(event["payload"]["summary"]) == 1024 and event["payload"]["summary"][-1] == "…"


# --- retries ----------------------------------------------------------------------------------


def test_429_and_5xx_are_retried_honouring_retry_after() -> None:
    with service("pagerduty") as pd, service("slack") as slack:
        pd.answers = [(429, "", {"Retry-After": "0.03"}), (502, "", {})]
        slack.answers = [(429, "rate_limited", {"Retry-After": "30"}), (503, "", {})]
        pagerduty, pd_waits = _pagerduty(pd.url())
        to_slack, slack_waits = _slack(slack.url(SLACK_PATH))
        pagerduty.send("trigger", incident())
        to_slack.send("trigger", incident())
    assert len(pd.requests) == len(slack.requests) == 3
    assert pd.invalid == [] and slack.invalid == []
    assert pd_waits == [0.03, 0.02]  # Retry-After beats the first back-off; then it doubles
    assert slack_waits == [0.05, 0.02]  # a Retry-After longer than backoff_max_s is capped


def test_4xx_is_not_retried_and_says_why_without_the_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with service("pagerduty") as pd, service("slack") as slack:
        # PagerDuty's own 400 for a key of the wrong length (the stand-in's schema check).
        settings = _settings(pagerduty_routing_key=SecretStr(ROUTING_KEY + "X"),
                             pagerduty_url=pd.url())  # fmt: skip
        with pytest.raises(NotifyError) as pd_error:
            PagerDutyNotifier(settings, sleep=lambda _: None).send("trigger", incident())
        slack.answers = [(404, "no_service", {})]
        to_slack, waits = _slack(slack.url(SLACK_PATH))
        with pytest.raises(NotifyError) as slack_error:
            to_slack.send("trigger", incident())
    assert len(pd.requests) == 1 and len(slack.requests) == 1 and waits == []
    assert not pd_error.value.retryable and not slack_error.value.retryable
    assert "HTTP 400 (Event object is invalid: routing_key:" in str(pd_error.value)
    assert "HTTP 404 (no_service)" in str(slack_error.value)
    for secret in (ROUTING_KEY, SLACK_PATH, "s3cr3tTOKEN"):
        assert secret not in str(pd_error.value) + str(slack_error.value)
        assert secret not in caplog.text


def test_secrets_never_reach_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with service("pagerduty") as pd, service("slack") as slack:
        pd.answers = [(500, f"echo {ROUTING_KEY}", {})]  # even a service that echoes it
        slack.answers = [(500, f"echo {SLACK_PATH}", {})]
        pagerduty, _ = _pagerduty(pd.url())
        to_slack, _ = _slack(slack.url(SLACK_PATH))
        pagerduty.send("trigger", incident())
        to_slack.send("trigger", incident())
        settings = _settings(pagerduty_routing_key=SecretStr(ROUTING_KEY),
                             slack_webhook_url=SecretStr(slack.url(SLACK_PATH)))  # fmt: skip
        fanout = build_notifier(settings)
    assert "attempt 1/3" in caplog.text and "HTTP 500" in caplog.text
    assert pd.requests[-1]["routing_key"] == ROUTING_KEY  # sent, never shown
    shown = caplog.text + repr(pagerduty) + repr(to_slack) + repr(settings) + repr(fanout)
    for secret in (ROUTING_KEY, SLACK_PATH, "s3cr3tTOKEN"):
        assert secret not in shown


def test_a_malformed_url_is_named_by_its_setting_not_its_value() -> None:
    with pytest.raises(ValueError, match="TELLTALE_NOTIFY_SLACK_WEBHOOK_URL") as bad:
        SlackNotifier(_settings(slack_webhook_url=SecretStr(f"file:///{SLACK_PATH}")))
    assert SLACK_PATH not in str(bad.value)
    with pytest.raises(ValueError, match="PAGERDUTY_ROUTING_KEY"):
        PagerDutyNotifier(_settings())


# --- several notifiers ------------------------------------------------------------------------


def test_fan_out_a_failing_notifier_stops_no_other_and_catches_up_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with service("pagerduty") as pd, service("slack") as slack, webhook_server() as hook:
        settings = _settings(
            pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=pd.url(),
            slack_webhook_url=SecretStr(slack.url(SLACK_PATH)), webhook_url=SecretStr(hook.url()),
            max_attempts=2,
        )  # fmt: skip
        notifier = build_notifier(settings, sleep=lambda _: None, runbook_base_url=RUNBOOKS)
        assert isinstance(notifier, FanOutNotifier)
        assert repr(notifier) == "FanOutNotifier(pagerduty, slack, webhook)"
        slack.answers = [(503, "", {})] * 2  # Slack is down for the trigger's two attempts
        notifier.send("trigger", incident("firing"))  # no error: the others delivered it
        assert notifier.owed() == {"pagerduty": 0, "slack": 1, "webhook": 0}
        assert (len(pd.requests), len(slack.requests), len(hook.requests)) == (1, 2, 1)
        notifier.send("resolve", incident("resolved"))  # Slack catches up first, in order
        assert notifier.owed() == {"pagerduty": 0, "slack": 0, "webhook": 0}
        assert [r["text"].split()[1] for r in slack.requests[2:]] == ["FIRING", "RESOLVED"]
        assert [r["event_action"] for r in pd.requests] == ["trigger", "resolve"]
        assert [r["event"] for r in hook.requests] == ["firing", "resolved"]

        slack.answers = [(400, "invalid_payload", {})]  # rejected: logged, not owed
        notifier.send("trigger", incident("firing"))
        assert notifier.owed()["slack"] == 0
        assert "slack rejected trigger" in caplog.text

        pd.answers = [(500, "", {})] * 2
        slack.answers = [(500, "", {})] * 2
        hook.statuses = [500] * 2
        with pytest.raises(NotifyError, match="no notifier delivered") as failed:
            notifier.send("trigger", incident("firing"))  # the monitor will send it again
        assert failed.value.retryable and notifier.owed() == {
            "pagerduty": 0, "slack": 0, "webhook": 0}  # fmt: skip
    assert pd.invalid == [] and slack.invalid == []


def test_retry_owed_resends_without_a_new_message() -> None:
    with service("slack") as slack, service("pagerduty") as pd:
        to_slack, _ = _slack(slack.url(SLACK_PATH), max_attempts=1)
        pagerduty, _ = _pagerduty(pd.url())
        fanout = FanOutNotifier({"pagerduty": pagerduty, "slack": to_slack})
        slack.answers = [(502, "", {}), (502, "", {})]
        fanout.send("trigger", incident())
        assert fanout.retry_owed() == 1  # still down
        assert fanout.retry_owed() == 0  # back: delivered
    assert [r["text"].split()[1] for r in slack.requests] == ["FIRING"] * 3
    assert slack.invalid == []


def test_owed_messages_outlive_a_restart(ch: Any) -> None:
    """Slack is down when PagerDuty delivers: the owed message is written down, a new fan-out
    (a restarted monitor) takes it back and sends it once Slack is up, and then owes nothing."""
    firing = incident()
    insert_detections(ch, [firing])
    with service("slack") as slack, service("pagerduty") as pd:
        to_slack, _ = _slack(slack.url(SLACK_PATH), max_attempts=1)
        pagerduty, _ = _pagerduty(pd.url())
        before = FanOutNotifier({"pagerduty": pagerduty, "slack": to_slack})
        assert before.keep_in(ClickHouseOwedLedger(ch)) == 0
        slack.answers = [(503, "", {})]
        before.send("trigger", firing)
        assert before.owed() == {"pagerduty": 0, "slack": 1}
        assert [(o.notifier, o.action, o.detection_id) for o in list_owed(ch)] == [
            ("slack", "trigger", firing.detection_id)]  # fmt: skip

        after = FanOutNotifier({"pagerduty": pagerduty, "slack": to_slack})  # the restart
        assert after.keep_in(ClickHouseOwedLedger(ch)) == 1
        assert after.retry_owed() == 0
        assert list_owed(ch) == []
        assert FanOutNotifier({"slack": to_slack}).keep_in(ClickHouseOwedLedger(ch)) == 0
    assert [r["text"].split()[1] for r in slack.requests] == ["FIRING", "FIRING"]
    assert [r["event_action"] for r in pd.requests] == ["trigger"]  # PagerDuty: once
    assert slack.invalid == []


def test_an_owed_message_for_a_gone_detection_or_notifier_is_settled(ch: Any) -> None:
    ledger = ClickHouseOwedLedger(ch)
    kept, gone = incident(), replace(incident(), detection_id="erased")
    insert_detections(ch, [kept])
    ledger.owe("slack", "trigger", gone)  # its detection is not stored (erased, expired)
    ledger.owe("webhook", "trigger", kept)  # a notifier no longer configured
    with service("slack") as slack:
        to_slack, _ = _slack(slack.url(SLACK_PATH), max_attempts=1)
        assert FanOutNotifier({"slack": to_slack}).keep_in(ledger) == 0
    assert list_owed(ch) == [] and slack.requests == []


def test_one_notifier_is_not_wrapped_and_none_is_none() -> None:
    assert build_notifier(_settings()) is None
    only = build_notifier(_settings(slack_webhook_url=SecretStr("https://hooks.slack.com/x")))
    assert isinstance(only, SlackNotifier)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from telltale.settings import NotifySettings

    monkeypatch.setenv("TELLTALE_NOTIFY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("TELLTALE_NOTIFY_SLACK_WEBHOOK_URL", f"https://hooks.slack.com{SLACK_PATH}")
    monkeypatch.setenv("TELLTALE_NOTIFY_DASHBOARD_URL", DASHBOARD)
    env = NotifySettings()
    assert env.any_enabled and not env.enabled  # the generic webhook stays off
    assert env.pagerduty_url == "https://events.pagerduty.com/v2/enqueue"
    assert ROUTING_KEY not in repr(env) and SLACK_PATH not in repr(env)
    assert isinstance(build_notifier(env), FanOutNotifier)
    monkeypatch.setenv("TELLTALE_NOTIFY_DASHBOARD_URL", "grafana")
    with pytest.raises(ValueError, match="http"):
        NotifySettings()


# --- through the monitor and the CLI ----------------------------------------------------------


def test_the_monitor_pages_pagerduty_and_slack_for_one_incident(ch: Any) -> None:
    """A release spike from the engine: trigger and resolve on both services, valid, one
    dedup_key; Slack, down when it fired, gets the firing message on the next cycle."""
    traffic(ch, model="chat", version="v1", start=T0, minutes=150, per_minute=30, rate=0.02,
            seed=1)  # fmt: skip
    traffic(ch, model="chat", version="v2", start=T0 + 60 * MIN, minutes=45, per_minute=30,
            rate=0.12, seed=2)  # fmt: skip
    settings = MonitorConfig(lookback_minutes=600, resolve_after_minutes=30, settle_s=0)
    with service("pagerduty") as pd, service("slack") as slack:
        notify = _settings(
            pagerduty_routing_key=SecretStr(ROUTING_KEY), pagerduty_url=pd.url(),
            slack_webhook_url=SecretStr(slack.url(SLACK_PATH)), max_attempts=2,
        )  # fmt: skip
        notifier = build_notifier(notify, sleep=lambda _: None, runbook_base_url=RUNBOOKS)
        monitor = Monitor(ch, settings, notifier, notify)
        slack.answers = [(503, "", {})] * 2
        cycles = [monitor.run_once(now=T0 + minute * MIN) for minute in range(70, 200, 13)]
    (row,) = list_detections(ch)
    assert row.state == "resolved" and row.notified == "resolved"
    assert sum(c.notification_failures for c in cycles) == 0
    assert [r["event_action"] for r in pd.requests] == ["trigger", "resolve"]
    assert {r["dedup_key"] for r in pd.requests} == {row.detection_id}
    assert [r["text"].split()[1] for r in slack.requests] == [
        "FIRING", "FIRING", "FIRING", "RESOLVED"]  # fmt: skip
    assert pd.invalid == [] and slack.invalid == []
    details = pd.requests[0]["payload"]["custom_details"]
    assert details["baseline_version"] == "v1" and details["rates"][0].startswith(
        "stock_advice: v2"
    )


def test_cli_monitor_wires_the_notifiers_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - 150 * MIN
    path = tmp_path / "db"
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        traffic(client, model="chat", version="v1", start=start, minutes=150, per_minute=30,
                rate=0.02, seed=1)  # fmt: skip
        traffic(client, model="chat", version="v2", start=start + 90 * MIN, minutes=60,
                per_minute=30, rate=0.15, seed=2)  # fmt: skip
    finally:
        client.close()
    monkeypatch.setenv("TELLTALE_MONITOR_LOOKBACK_MINUTES", "300")
    monkeypatch.delenv("TELLTALE_NOTIFY_WEBHOOK_URL", raising=False)
    with service("pagerduty") as pd, service("slack") as slack:
        monkeypatch.setenv("TELLTALE_NOTIFY_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
        monkeypatch.setenv("TELLTALE_NOTIFY_PAGERDUTY_URL", pd.url("/v2/enqueue"))
        monkeypatch.setenv("TELLTALE_NOTIFY_SLACK_WEBHOOK_URL", slack.url(SLACK_PATH))
        monkeypatch.setenv("TELLTALE_GRAFANA_RUNBOOK_BASE_URL", RUNBOOKS)
        app = typer.Typer()
        app.command("monitor")(monitor)
        app.command("other")(lambda: None)  # a group, so `monitor` is a subcommand
        result = CliRunner().invoke(
            app, ["monitor", "--once", "--clickhouse", f"chdb://{path}", "--format", "json"]
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notifications_sent"] == 1
    assert [r["event_action"] for r in pd.requests] == ["trigger"]
    assert [r["text"].split()[1] for r in slack.requests] == ["FIRING"]
    assert pd.invalid == [] and slack.invalid == []
    assert pd.requests[0]["links"][0]["href"] == f"{RUNBOOKS}#telltale-release-spike"
    assert ROUTING_KEY not in result.output and SLACK_PATH not in result.output
