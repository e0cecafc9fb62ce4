"""What Grafana's and the ClickHouse plugin's own code say about telltale's files (issue 13).

* docker-compose pins a compatible Grafana + plugin pair (the plugin's ``plugin.json``
  ``grafanaDependency``; its release is what targets declare as ``pluginVersion``);
* the provisioned contact point posts to a service that exists in the stack and accepts
  Grafana's webhook payload (``telltale alerts receiver``);
* ``runbook_url`` annotations are absolute, from a configurable base, and resolve to a section
  of the served runbook page;
* the mounted alerting provisioning folder holds YAML only;
* every panel target, annotation target and alert-rule query carries ``pluginVersion`` >= 4
  (without it the plugin's editor migrates the query as a v3 one: ``isV3CHQuery``);
* the static report uses Grafana's interval rule per panel.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from alerts.delivery.receiver import Receiver, render_runbooks
from alerts.delivery.rules import RULES, api_payloads, provisioning_file
from dashboards.clickhouse import GRAFANA_VERSION, PLUGIN_MIN_GRAFANA, PLUGIN_VERSION
from dashboards.definitions import build_dashboards
from dashboards.files import dashboard_document
from dashboards.macros import interval_for, parse_interval_s, round_interval_ms
from dashboards.settings import GrafanaConfig
from telltale.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def _version(text: str) -> tuple[int, ...]:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", text)
    assert match, f"not a pinned version: {text!r}"
    return tuple(int(g) for g in match.groups())


def test_compose_pins_a_compatible_grafana_and_plugin_pair() -> None:
    grafana = SERVICES["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana-oss" and tag == GRAFANA_VERSION
    assert _version(tag) >= _version(PLUGIN_MIN_GRAFANA)
    env = grafana["environment"]
    assert "GF_INSTALL_PLUGINS" not in env  # unpinned before; deprecated in Grafana 12
    plugins = dict(p.split("@", 1) for p in env["GF_PLUGINS_PREINSTALL_SYNC"].split(","))
    assert plugins == {"grafana-clickhouse-datasource": PLUGIN_VERSION}
    assert _version(PLUGIN_VERSION) >= (4, 0, 0)


def _targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = [t for p in document["panels"] for t in p.get("targets", [])]
    found += [a["target"] for a in document["annotations"]["list"] if "target" in a]
    return found


def test_every_query_declares_the_plugin_version() -> None:
    targets = [t for d in build_dashboards() for t in _targets(dashboard_document(d))]
    assert len(targets) > 15
    for target in targets:
        assert target["pluginVersion"] == PLUGIN_VERSION, target.get("rawSql", "")[:60]
    for rule in api_payloads().rules:
        model = rule["data"][0]["model"]
        assert model["pluginVersion"] == PLUGIN_VERSION
    committed = REPO / "dashboards" / "generated" / "telltale-overview.json"
    document = json.loads(committed.read_text(encoding="utf-8"))
    assert all(t["pluginVersion"] == PLUGIN_VERSION for t in _targets(document))


def test_alerting_provisioning_folder_is_yaml_only() -> None:
    mounts = {}
    for mount in SERVICES["grafana"]["volumes"]:
        source, target = mount.split(":")[:2]
        mounts[target] = source
    folder = REPO / mounts["/etc/grafana/provisioning/alerting"]
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".yaml", ".yml") for p in files), files
    for path in files:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["apiVersion"] == 1


def test_contact_point_posts_to_a_service_of_the_stack() -> None:
    document = yaml.safe_load(provisioning_file())
    [contact] = document["contactPoints"]
    url = contact["receivers"][0]["settings"]["url"]
    host, port = urlsplit(url).hostname, urlsplit(url).port
    assert host in SERVICES, f"{host} is not a compose service: every notification would fail"
    receiver = SERVICES[host]
    command = receiver["command"]
    assert command[:2] == ["alerts", "receiver"]
    assert command[command.index("--port") + 1] == str(port)
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from grafana


@pytest.fixture
def receiver() -> Any:
    server = Receiver("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_receiver_accepts_grafanas_webhook_and_serves_runbooks(receiver: Any) -> None:
    rule = api_payloads().rules[0]
    # The shape of Grafana's webhook notifier body (alerts[] with labels and annotations).
    payload = {
        "receiver": "telltale-webhook", "status": "firing", "orgId": 1,
        "groupLabels": {"alertname": rule["title"]}, "commonLabels": {}, "version": "1",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": rule["title"], "model": "chat", "signal": "stock_advice",
                       "top_slice": "customer_tier=free & locale=de"},
            "annotations": {k: str(v) for k, v in rule["annotations"].items()},
            "startsAt": "2026-09-14T10:44:00Z", "fingerprint": "abc",
        }],
    }  # fmt: skip
    base = f"http://127.0.0.1:{receiver.port}"
    assert _post(f"{base}/telltale", json.dumps(payload).encode()) == 200
    [got] = receiver.received
    assert got.rule == rule["title"] and got.labels["top_slice"].startswith("customer_tier")
    assert _post(f"{base}/telltale", b"not json") == 400
    assert _post(f"{base}/telltale", b'{"no": "alerts"}') == 400
    assert len(receiver.received) == 1
    with urllib.request.urlopen(f"{base}/runbooks", timeout=5) as answer:
        page = answer.read().decode()
    for spec in RULES:
        assert f'id="{spec.anchor}"' in page


def test_runbook_urls_are_absolute_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    page = render_runbooks()
    for rule in api_payloads().rules:
        url = rule["annotations"]["runbook_url"]
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.hostname, url
        assert f'id="{parts.fragment}"' in page
    # The default points at the stack's receiver, published on the host.
    receiver_ports = SERVICES["alert-receiver"]["ports"]
    assert "8080:8080" in receiver_ports
    assert url.startswith("http://localhost:8080/runbooks#")
    monkeypatch.setenv("TELLTALE_GRAFANA_RUNBOOK_BASE_URL", "https://wiki.example/telltale/")
    settings = load_settings().grafana
    urls = [r["annotations"]["runbook_url"] for r in api_payloads(settings).rules]
    assert all(u.startswith("https://wiki.example/telltale#telltale-") for u in urls)
    with pytest.raises(ValueError, match="not an http"):
        GrafanaConfig(runbook_base_url="alerts/provisioning/runbooks.md")
    monkeypatch.setenv("TELLTALE_GRAFANA_RUNBOOK_BASE_URL", "runbooks.md")
    with pytest.raises(SettingsError, match="TELLTALE_GRAFANA_RUNBOOK_BASE_URL"):
        load_settings()


def test_release_spike_alerts_carry_the_top_slice() -> None:
    [spike] = [r for r in api_payloads().rules if r["uid"] == "telltale-release-spike"]
    assert "top_slice" in spike["data"][0]["model"]["rawSql"]
    assert "{{ $labels.top_slice }}" in spike["annotations"]["summary"]


def test_grafanas_interval_rule() -> None:
    # The ladder of @grafana/data's roundInterval, at and around its bounds.
    assert [round_interval_ms(v) for v in (89_999, 90_000, 209_999, 210_000, 449_999)] == [
        60_000, 120_000, 120_000, 300_000, 300_000,
    ]  # fmt: skip
    day = (datetime(2026, 9, 14, tzinfo=UTC), datetime(2026, 9, 15, tzinfo=UTC))
    assert interval_for(*day, max_data_points=1104, min_interval_s=60) == 60
    assert interval_for(*day, max_data_points=552, min_interval_s=60) == 120
    week = (day[0], day[0] + timedelta(days=7))
    assert interval_for(*week, max_data_points=1104, min_interval_s=60) == 600
    hour = (day[0], day[0] + timedelta(hours=1))
    assert interval_for(*hour, max_data_points=1104, min_interval_s=60) == 60  # never below
    assert interval_for(*hour, max_data_points=1104, min_interval_s=1) == 2  # 3.26 s -> 2 s
    assert parse_interval_s("1m") == 60 and parse_interval_s(None, 1) == 1
