"""``dashboards push`` and ``alerts push`` against a local stand-in for Grafana's HTTP API.

No Grafana server can be installed here. The stand-in listens on 127.0.0.1 only, is started
and stopped by the fixture, and checks every request against Grafana's documented endpoints
and payload shapes (method, path, headers, and a JSON schema per body, written from Grafana's
HTTP API reference and its swagger definitions: ProvisionedAlertRule, EmbeddedContactPoint,
the notification-policy Route). Anything else is answered with an error *and* recorded, so a
test fails on it. It keeps state like Grafana (404 until created), which makes idempotency
observable.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import typer
from typer.testing import CliRunner

from alerts.delivery.rules import RULES
from dashboards.definitions import build_dashboards
from dashboards.errors import ProvisioningError
from dashboards.files import dashboard_document
from dashboards.provision import Provisioner, Upsert, connect_grafana
from telltale.cli_dashboards import alerts_push, dashboards_app
from telltale.settings import GrafanaSettings

TOKEN = "glsa_test-token-SECRET-0123456789"
CH_PASSWORD = "ch-password-SECRET"
WEBHOOK = "https://hooks.example/services/SECRET-PATH"
DURATION = {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$"}
UID = {"type": "string", "pattern": r"^[a-zA-Z0-9\-_]{1,40}$"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# --- request schemas, from Grafana's HTTP API reference ---------------------------------------

FOLDER_CREATE = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "uid": UID,
        "title": {"type": "string", "minLength": 1},
        "parentUid": {"type": "string"},
        "description": {"type": "string"},
    },
    "additionalProperties": False,
}
FOLDER_UPDATE = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "version": {"type": "integer"},
        "overwrite": {"type": "boolean"},
        "description": {"type": "string"},
        "uid": UID,
    },
    "additionalProperties": False,
}
DATASOURCE = {
    "type": "object",
    "required": ["name", "type", "access"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "type": {"type": "string"},
        "access": {"enum": ["proxy", "direct"]},
        "uid": UID,
        "url": {"type": "string"},
        "isDefault": {"type": "boolean"},
        "jsonData": {"type": "object"},
        "secureJsonData": STR_MAP,
        "basicAuth": {"type": "boolean"},
        "user": {"type": "string"},
        "database": {"type": "string"},
        "withCredentials": {"type": "boolean"},
        "readOnly": {"type": "boolean"},
        "version": {"type": "integer"},
    },
    "additionalProperties": False,
}
DASHBOARD_DB = {
    "type": "object",
    "required": ["dashboard"],
    "properties": {
        "dashboard": {
            "type": "object",
            "required": ["title", "uid"],
            "properties": {
                "id": {"type": "null"},
                "uid": UID,
                "title": {"type": "string", "minLength": 1},
                "panels": {"type": "array"},
            },
        },
        "folderUid": {"type": "string"},
        "folderId": {"type": "integer"},
        "message": {"type": "string"},
        "overwrite": {"type": "boolean"},
    },
    "additionalProperties": False,
}
ALERT_QUERY = {
    "type": "object",
    "required": ["refId", "datasourceUid", "model"],
    "properties": {
        "refId": {"type": "string", "minLength": 1},
        "queryType": {"type": "string"},
        "relativeTimeRange": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {
                "from": {"type": "integer", "minimum": 0},
                "to": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "datasourceUid": {"type": "string", "minLength": 1},
        "model": {"type": "object", "required": ["refId"]},
    },
    "additionalProperties": False,
}
PROVISIONED_ALERT_RULE = {
    "type": "object",
    "required": [
        "orgID",
        "folderUID",
        "ruleGroup",
        "title",
        "condition",
        "data",
        "noDataState",
        "execErrState",
        "for",
    ],
    "properties": {
        "id": {"type": "integer"},
        "uid": UID,
        "orgID": {"type": "integer"},
        "folderUID": {"type": "string", "minLength": 1},
        "ruleGroup": {"type": "string", "minLength": 1, "maxLength": 190},
        "title": {"type": "string", "minLength": 1, "maxLength": 190},
        "condition": {"type": "string", "minLength": 1},
        "data": {"type": "array", "minItems": 1, "items": ALERT_QUERY},
        "noDataState": {"enum": ["Alerting", "NoData", "OK", "KeepLast"]},
        "execErrState": {"enum": ["OK", "Alerting", "Error", "KeepLast"]},
        "for": DURATION,
        "annotations": STR_MAP,
        "labels": STR_MAP,
        "isPaused": {"type": "boolean"},
    },
    "additionalProperties": False,
}
CONTACT_POINT_TYPES = [
    "alertmanager",
    "dingding",
    "discord",
    "email",
    "googlechat",
    "kafka",
    "line",
    "opsgenie",
    "pagerduty",
    "pushover",
    "sensugo",
    "slack",
    "teams",
    "telegram",
    "threema",
    "victorops",
    "webhook",
    "wecom",
]
EMBEDDED_CONTACT_POINT = {
    "type": "object",
    "required": ["name", "type", "settings"],
    "properties": {
        "uid": UID,
        "name": {"type": "string", "minLength": 1},
        "type": {"enum": CONTACT_POINT_TYPES},
        "settings": {"type": "object"},
        "disableResolveMessage": {"type": "boolean"},
    },
    "additionalProperties": False,
}
ROUTE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "receiver": {"type": "string"},
        "group_by": {"type": "array", "items": {"type": "string"}},
        "object_matchers": {
            "type": "array",
            "items": {
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "items": {"type": "string"},
                "prefixItems": [{"type": "string"}, {"enum": ["=", "!=", "=~", "!~"]}],
            },
        },
        "matchers": {"type": "array", "items": {"type": "string"}},
        "continue": {"type": "boolean"},
        "mute_time_intervals": {"type": "array", "items": {"type": "string"}},
        "group_wait": DURATION,
        "group_interval": DURATION,
        "repeat_interval": DURATION,
        "routes": {"type": "array", "items": {"$ref": "#"}},
    },
    "additionalProperties": False,
}
POLICY_TREE = {**ROUTE, "required": ["receiver"]}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """Grafana's documented provisioning endpoints, with state and request checks."""

    token: str
    org_id: str = "1"
    requests: list[Request] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    contact_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy_tree: dict[str, Any] | None = None
    fail_with: int | None = None

    def routes(self) -> list[tuple[str, str, dict[str, Any] | None, Callable[..., Any]]]:
        uid = r"(?P<uid>[^/]+)"
        return [
            ("GET", rf"/api/folders/{uid}", None, self.get_folder),
            ("POST", r"/api/folders", FOLDER_CREATE, self.create_folder),
            ("PUT", rf"/api/folders/{uid}", FOLDER_UPDATE, self.update_folder),
            ("GET", rf"/api/datasources/uid/{uid}", None, self.get_datasource),
            ("POST", r"/api/datasources", DATASOURCE, self.create_datasource),
            ("PUT", rf"/api/datasources/uid/{uid}", DATASOURCE, self.update_datasource),
            ("GET", rf"/api/dashboards/uid/{uid}", None, self.get_dashboard),
            ("POST", r"/api/dashboards/db", DASHBOARD_DB, self.save_dashboard),
            ("GET", rf"/api/v1/provisioning/alert-rules/{uid}", None, self.get_rule),
            ("POST", r"/api/v1/provisioning/alert-rules", PROVISIONED_ALERT_RULE, self.create_rule),
            (
                "PUT",
                rf"/api/v1/provisioning/alert-rules/{uid}",
                PROVISIONED_ALERT_RULE,
                self.update_rule,
            ),
            ("GET", r"/api/v1/provisioning/contact-points", None, self.list_contact_points),
            (
                "POST",
                r"/api/v1/provisioning/contact-points",
                EMBEDDED_CONTACT_POINT,
                self.create_contact_point,
            ),
            (
                "PUT",
                rf"/api/v1/provisioning/contact-points/{uid}",
                EMBEDDED_CONTACT_POINT,
                self.update_contact_point,
            ),
            ("PUT", r"/api/v1/provisioning/policies", POLICY_TREE, self.set_policies),
        ]

    # Each handler returns (status, body) as documented.
    def get_folder(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid in self.folders:
            return 200, self.folders[uid]
        return 404, {"message": "folder not found"}

    def create_folder(self, req: Request) -> tuple[int, Any]:
        if req.body.get("uid") in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {
            "id": len(self.folders) + 1,
            "uid": req.body["uid"],
            "title": req.body["title"],
            "version": 1,
        }
        self.folders[folder["uid"]] = folder
        return 200, folder

    def update_folder(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found"}
        self.folders[uid].update(title=req.body["title"])
        return 200, self.folders[uid]

    def get_datasource(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid in self.datasources:
            return 200, {k: v for k, v in self.datasources[uid].items() if k != "secureJsonData"}
        return 404, {"message": "Data source not found"}

    def create_datasource(self, req: Request) -> tuple[int, Any]:
        if any(d["name"] == req.body["name"] for d in self.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        self.datasources[req.body["uid"]] = {**req.body, "id": len(self.datasources) + 1}
        return 200, {
            "id": len(self.datasources),
            "message": "Datasource added",
            "name": req.body["name"],
            "datasource": req.body,
        }

    def update_datasource(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        self.datasources[uid].update(req.body)
        return 200, {"message": "Datasource updated", "name": req.body["name"]}

    def get_dashboard(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid in self.dashboards:
            return 200, {"dashboard": self.dashboards[uid]["dashboard"], "meta": {}}
        return 404, {"message": "Dashboard not found"}

    def save_dashboard(self, req: Request) -> tuple[int, Any]:
        dashboard = req.body["dashboard"]
        if req.body.get("folderUid") and req.body["folderUid"] not in self.folders:
            return 400, {"message": "folder not found"}
        current = self.dashboards.get(dashboard["uid"])
        if current and not req.body.get("overwrite"):
            return 412, {"status": "version-mismatch", "message": "version mismatch"}
        version = (current["version"] + 1) if current else 1
        self.dashboards[dashboard["uid"]] = {**req.body, "version": version}
        return 200, {
            "id": 1,
            "uid": dashboard["uid"],
            "url": f"/d/{dashboard['uid']}",
            "status": "success",
            "version": version,
            "slug": "x",
        }

    def get_rule(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid in self.rules:
            return 200, self.rules[uid]
        return 404, {"message": "not found"}

    def create_rule(self, req: Request) -> tuple[int, Any]:
        if req.body["uid"] in self.rules:
            return 409, {"message": "rule with the same uid already exists"}
        if req.body["folderUID"] not in self.folders:
            return 400, {"message": "folder does not exist"}
        self.rules[req.body["uid"]] = req.body
        return 201, req.body

    def update_rule(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.rules:
            return 404, {"message": "not found"}
        self.rules[uid] = req.body
        return 200, req.body

    def list_contact_points(self, req: Request) -> tuple[int, Any]:
        name = req.query.get("name", [None])[0]
        points = [p for p in self.contact_points.values() if name in (None, p["name"])]
        return 200, points

    def create_contact_point(self, req: Request) -> tuple[int, Any]:
        self.contact_points[req.body["uid"]] = req.body
        return 202, req.body

    def update_contact_point(self, req: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.contact_points:
            return 404, {"message": "contact point not found"}
        self.contact_points[uid] = req.body
        return 202, {"message": "contactpoint updated"}

    def set_policies(self, req: Request) -> tuple[int, Any]:
        known = {p["name"] for p in self.contact_points.values()}
        receivers = _receivers(req.body)
        if not receivers <= known:
            return 400, {"message": f"unknown receivers {sorted(receivers - known)}"}
        self.policy_tree = req.body
        return 202, {"message": "policies updated"}

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, req: Request) -> tuple[int, Any]:
        self.requests.append(req)
        if self.fail_with is not None:
            return self.fail_with, {"message": "access denied to this resource"}
        if req.headers.get("authorization") != f"Bearer {self.token}":
            self.violations.append(f"{req.method} {req.path}: no bearer token")
            return 401, {"message": "Unauthorized"}
        if req.headers.get("x-grafana-org-id") != self.org_id:
            self.violations.append(f"{req.method} {req.path}: X-Grafana-Org-Id missing")
        for method, pattern, schema, handler in self.routes():
            match = re.fullmatch(pattern, req.path)
            if method != req.method or match is None:
                continue
            if schema is not None:
                if not req.headers.get("content-type", "").startswith("application/json"):
                    self.violations.append(f"{req.method} {req.path}: not application/json")
                try:
                    jsonschema.validate(req.body, schema)
                except jsonschema.ValidationError as exc:
                    self.violations.append(f"{req.method} {req.path}: {exc.message}")
                    return 400, {"message": exc.message}
                self._check_provenance(req)
            return handler(req, **match.groupdict())  # type: ignore[no-any-return]
        self.violations.append(f"undocumented endpoint {req.method} {req.path}")
        return 404, {"message": "Not found"}

    def _check_provenance(self, req: Request) -> None:
        alerting = req.path.startswith("/api/v1/provisioning/")
        if alerting and req.headers.get("x-disable-provenance") != "true":
            self.violations.append(f"{req.method} {req.path}: no X-Disable-Provenance")


def _receivers(route: dict[str, Any]) -> set[str]:
    found = {route["receiver"]} if route.get("receiver") else set()
    for child in route.get("routes", []):
        found |= _receivers(child)
    return found


def _handler(grafana: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            status, answer = grafana.handle(request)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def grafana(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGrafana]:
    """The stand-in on 127.0.0.1 (ephemeral port), and the env pointing telltale at it."""
    fake = FakeGrafana(token=TOKEN)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    for key in ("TELLTALE_GRAFANA_FOLDER_UID", "TELLTALE_GRAFANA_DISABLE_PROVENANCE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TELLTALE_GRAFANA_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("TELLTALE_GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("TELLTALE_GRAFANA_ORG_ID", "1")
    monkeypatch.setenv("TELLTALE_GRAFANA_CLICKHOUSE_PASSWORD", CH_PASSWORD)
    monkeypatch.setenv("TELLTALE_GRAFANA_WEBHOOK_URL", WEBHOOK)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cli() -> typer.Typer:
    """The wiring ``telltale.cli`` gets: ``dashboards build|push`` and ``alerts push``."""
    app = typer.Typer()
    app.add_typer(dashboards_app, name="dashboards")
    alerts = typer.Typer()
    alerts.command("push")(alerts_push)
    app.add_typer(alerts, name="alerts")
    return app


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli(), list(args))
    return result


def writes(grafana: FakeGrafana) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in grafana.requests if r.method != "GET"]


# --- tests ----------------------------------------------------------------------------------


def test_dashboards_push_creates_then_updates_by_uid(grafana: FakeGrafana) -> None:
    first = invoke("dashboards", "push", "--format", "json")
    assert first.exit_code == 0, first.output
    assert grafana.violations == []
    actions = {(i["kind"], i["action"]) for i in json.loads(first.stdout)["items"]}
    assert actions == {("folder", "created"), ("datasource", "created"), ("dashboard", "created")}
    uids = {d.uid for d in build_dashboards()}
    assert set(grafana.dashboards) == uids
    assert all(d["folderUid"] == "telltale" and d["overwrite"] for d in grafana.dashboards.values())
    for built in build_dashboards():  # the same JSON model the files carry, id left to Grafana
        sent = grafana.dashboards[str(built.uid)]["dashboard"]
        assert sent == {**dashboard_document(built), "id": None}
    source = grafana.datasources["telltale-clickhouse"]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["secureJsonData"] == {"password": CH_PASSWORD}
    assert writes(grafana)[:2] == [("POST", "/api/folders"), ("POST", "/api/datasources")]

    grafana.requests.clear()
    second = invoke("dashboards", "push", "--format", "json")
    assert second.exit_code == 0, second.output
    assert grafana.violations == []
    actions = {(i["kind"], i["action"]) for i in json.loads(second.stdout)["items"]}
    assert actions == {("folder", "unchanged"), ("datasource", "updated"), ("dashboard", "updated")}
    assert ("POST", "/api/folders") not in writes(grafana)
    assert ("PUT", "/api/datasources/uid/telltale-clickhouse") in writes(grafana)
    assert len(grafana.folders) == 1 and len(grafana.datasources) == 1
    assert set(grafana.dashboards) == uids
    assert {d["version"] for d in grafana.dashboards.values()} == {2}


def test_alerts_push_creates_then_updates_by_uid(grafana: FakeGrafana) -> None:
    first = invoke("alerts", "push")
    assert first.exit_code == 0, first.output
    assert grafana.violations == []
    assert set(grafana.rules) == {spec.uid for spec in RULES}
    assert grafana.contact_points["telltale-webhook"]["settings"]["url"] == WEBHOOK
    assert grafana.policy_tree is not None
    assert grafana.policy_tree["receiver"] == "telltale-webhook"
    rule_posts = [p for m, p in writes(grafana) if m == "POST" and "alert-rules" in p]
    assert len(rule_posts) == len(RULES)

    grafana.requests.clear()
    second = invoke("alerts", "push")
    assert second.exit_code == 0, second.output
    assert grafana.violations == []
    methods = {m for m, p in writes(grafana) if "alert-rules" in p or "contact-points" in p}
    assert methods == {"PUT"}, "a second push must update, not create"
    assert len(grafana.rules) == len(RULES) and len(grafana.contact_points) == 1


def test_alerting_writes_carry_x_disable_provenance(grafana: FakeGrafana) -> None:
    assert invoke("alerts", "push").exit_code == 0
    alerting = [
        r
        for r in grafana.requests
        if r.method != "GET" and r.path.startswith("/api/v1/provisioning/")
    ]
    assert alerting and all(r.headers["x-disable-provenance"] == "true" for r in alerting)


def test_dry_run_prints_the_plan_and_sends_nothing(grafana: FakeGrafana) -> None:
    dashboards = invoke("dashboards", "push", "--dry-run", "--format", "json")
    alerts = invoke("alerts", "push", "--dry-run", "--format", "json")
    assert dashboards.exit_code == 0 and alerts.exit_code == 0
    assert grafana.requests == []
    plan = json.loads(dashboards.stdout)["items"] + json.loads(alerts.stdout)["items"]
    kinds = [item["kind"] for item in plan]
    assert kinds.count("dashboard") == 4 and kinds.count("alert-rule") == len(RULES)
    assert {"folder", "datasource", "contact-point", "policy-tree"} <= set(kinds)
    dashboard = next(i for i in plan if i["kind"] == "dashboard")["payload"]
    jsonschema.validate(dashboard, DASHBOARD_DB)
    text = invoke("dashboards", "push", "--dry-run")
    assert "# would upsert dashboard telltale-overview" in text.stdout
    for output in (dashboards.output, alerts.output, text.output):
        assert TOKEN not in output and CH_PASSWORD not in output and WEBHOOK not in output


def test_grafana_errors_fail_cleanly_without_leaking_the_token(
    grafana: FakeGrafana, caplog: pytest.LogCaptureFixture
) -> None:
    grafana.fail_with = 403
    with caplog.at_level(logging.DEBUG):
        result = invoke("dashboards", "push")
    assert result.exit_code == 1
    assert "403" in result.output and "folder 'telltale'" in result.output
    assert TOKEN not in result.output and TOKEN not in caplog.text


def test_token_is_never_logged(grafana: FakeGrafana, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert invoke("dashboards", "push").exit_code == 0
        assert invoke("alerts", "push").exit_code == 0
    assert caplog.records, "the provisioner logs what it did"
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(GrafanaSettings())


def test_the_stand_in_rejects_undocumented_shapes(grafana: FakeGrafana) -> None:
    """The checks have teeth: a payload Grafana would refuse is refused here too."""
    provisioner = Provisioner(connect_grafana(GrafanaSettings()))
    provisioner.apply([Upsert("folder", "telltale", {"uid": "telltale", "title": "T"})])
    bad_rule = {"uid": "x", "title": "x", "condition": "A", "data": [], "folderUID": "telltale"}
    with pytest.raises(ProvisioningError, match="400"):
        provisioner.apply([Upsert("alert-rule", "x", bad_rule)])
    assert any("alert-rules" in v for v in grafana.violations)
    grafana.violations.clear()
