"""Alert rules as code: every rule query against ClickHouse, what fires on the seeded data,
and the shape of the API payloads and of the provisioning file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_seed import CHAT, IMAGE, NEW, now_minute, seed
from pydantic import SecretStr

from alerts.delivery.rules import (
    CONTACT_POINT_UID,
    RULE_GROUP,
    RULES,
    RuleSpec,
    api_payloads,
    provisioning_file,
)
from dashboards import DATASOURCE_UID, GrafanaConfig, QueryContext
from dashboards.run import Frame, run_query
from storage.client import connect
from storage.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "alerts" / "runbooks.md"
BY_UID = {spec.uid: spec for spec in RULES}


def _window() -> QueryContext:
    """Alert queries are relative to now(); the window is what Grafana's relativeTimeRange
    would pass (unused by these statements, which carry their own)."""
    now = datetime.now(UTC)
    return QueryContext(now - timedelta(minutes=10), now, 60, {})


def _firing(spec: RuleSpec, frame: Frame) -> list[dict[str, Any]]:
    """Rows for which the rule's threshold expression is true: the alert instances."""
    value = spec.query.columns[-1]
    rows = [dict(zip(frame.columns, row)) for row in frame.rows]
    if spec.comparison == "gt":
        return [r for r in rows if r[value] > spec.threshold]
    return [r for r in rows if r[value] < spec.threshold]


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each rule's query result on an empty database, then on the seeded one."""
    client = connect(f"chdb://{tmp_path_factory.mktemp('alerts') / 'db'}")
    migrate(client)
    try:
        empty = {spec.uid: run_query(client, spec.query, _window()) for spec in RULES}
        seed(client, now_minute())
        seeded = {spec.uid: run_query(client, spec.query, _window()) for spec in RULES}
        yield {"empty": empty, "seeded": seeded}
    finally:
        client.close()


@pytest.mark.parametrize("uid", sorted(BY_UID))
def test_every_rule_query_returns_its_columns_and_rows(
    evaluations: dict[str, Any], uid: str
) -> None:
    frame = evaluations["seeded"][uid]
    assert frame.columns == BY_UID[uid].query.columns
    assert frame.rows, f"{uid} returned no rows on the seeded data"
    value_column = frame.columns[-1]
    assert all(isinstance(v, float) for v in frame.column(value_column)), "one numeric column"
    labels = frame.columns[:-1]
    assert all(isinstance(v, str) for c in labels for v in frame.column(c)), "string labels"


@pytest.mark.parametrize(
    ("uid", "instance"),
    [
        ("telltale-release-spike", {"model": CHAT, "model_version": NEW, "signal": "stock_advice"}),
        (
            "telltale-degradation",
            {"model": IMAGE, "model_version": "v3", "signal": "stock_watermark"},
        ),
        ("telltale-prompt-drift", {"model": CHAT, "model_version": "", "signal": ""}),
    ],
)
def test_detector_rules_fire_once_per_open_detection(
    evaluations: dict[str, Any], uid: str, instance: dict[str, str]
) -> None:
    spec = BY_UID[uid]
    firing = _firing(spec, evaluations["seeded"][uid])
    assert [{k: r[k] for k in instance} for r in firing] == [instance]
    assert not _firing(spec, evaluations["empty"][uid])


def test_resolved_detections_do_not_fire(evaluations: dict[str, Any]) -> None:
    firing = _firing(BY_UID["telltale-degradation"], evaluations["seeded"]["telltale-degradation"])
    assert all(r["model"] != CHAT for r in firing), "the resolved CUSUM detection fired"


def test_stall_rule_fires_on_an_empty_database_and_not_on_fresh_events(
    evaluations: dict[str, Any],
) -> None:
    spec = BY_UID["telltale-pipeline-stalled"]
    assert len(evaluations["empty"][spec.uid].rows) == 1, "no data must not mean 'fine'"
    assert _firing(spec, evaluations["empty"][spec.uid])
    assert not _firing(spec, evaluations["seeded"][spec.uid])
    assert spec.no_data == "Alerting"


def test_ingest_lag_rule_fires_on_late_events(evaluations: dict[str, Any]) -> None:
    spec = BY_UID["telltale-ingest-lag"]
    # The seeded events are stored hours after their timestamps: lag.
    assert _firing(spec, evaluations["seeded"][spec.uid])
    assert not _firing(spec, evaluations["empty"][spec.uid])


def test_dead_letter_rule_fires_on_a_high_share_of_refused_payloads(
    evaluations: dict[str, Any],
) -> None:
    spec = BY_UID["telltale-dead-letters"]
    [[share]] = evaluations["seeded"][spec.uid].rows
    assert share == pytest.approx(40 / 340)
    assert _firing(spec, evaluations["seeded"][spec.uid])
    assert not _firing(spec, evaluations["empty"][spec.uid])


# --- API payloads ---------------------------------------------------------------------------

# ProvisionedAlertRule, as documented for POST /api/v1/provisioning/alert-rules.
REQUIRED_RULE_FIELDS = {
    "title",
    "condition",
    "data",
    "folderUID",
    "ruleGroup",
    "for",
    "noDataState",
    "execErrState",
    "orgID",
}


@pytest.fixture(scope="module")
def payloads() -> Any:
    return api_payloads(
        GrafanaConfig(folder_uid="team-folder", webhook_url=SecretStr("https://hook/x"))
    )


def test_rule_payloads_have_the_documented_shape(payloads: Any) -> None:
    assert {r["uid"] for r in payloads.rules} == set(BY_UID)
    for rule in payloads.rules:
        spec = BY_UID[rule["uid"]]
        assert set(rule) >= REQUIRED_RULE_FIELDS
        assert rule["folderUID"] == "team-folder" and rule["ruleGroup"] == RULE_GROUP
        assert rule["noDataState"] in {"OK", "NoData", "Alerting"}
        assert rule["execErrState"] in {"OK", "Alerting", "Error"}
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        query, condition = rule["data"]
        assert query["datasourceUid"] == DATASOURCE_UID
        assert query["model"]["rawSql"] == spec.query.sql
        assert query["model"]["format"] == 1 and query["relativeTimeRange"]["from"] > 0
        assert condition["datasourceUid"] == "__expr__"
        assert condition["model"]["type"] == "threshold"
        assert condition["model"]["expression"] == query["refId"]
        assert rule["condition"] == condition["refId"]
        evaluator = condition["model"]["conditions"][0]["evaluator"]
        assert evaluator == {"type": spec.comparison, "params": [spec.threshold]}


def test_rules_carry_routing_labels_and_runbooks(payloads: Any) -> None:
    anchors = set(re.findall(r"^## (\S+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    for rule in payloads.rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["labels"]["team"]
        assert {"summary", "description", "runbook", "runbook_url"} <= set(rule["annotations"])
        assert rule["annotations"]["runbook_url"].split("#")[1] in anchors
    detector_rules = [r for r in payloads.rules if "open_detections" in str(r["data"][0])]
    assert len(detector_rules) == 3
    for rule in detector_rules:  # the signal label comes from each row of the query
        assert "signal" in BY_UID[rule["uid"]].query.columns


def test_contact_point_and_policy_payloads(payloads: Any) -> None:
    contact = payloads.contact_point
    assert contact == {
        "uid": CONTACT_POINT_UID,
        "name": CONTACT_POINT_UID,
        "type": "webhook",
        "settings": {"url": "https://hook/x", "httpMethod": "POST"},
        "disableResolveMessage": False,
    }
    tree = payloads.policy_tree
    assert tree["receiver"] == CONTACT_POINT_UID
    for route in tree["routes"]:
        assert route["receiver"] == CONTACT_POINT_UID
        for matcher in route["object_matchers"]:  # Grafana's [label, op, value] triples
            assert isinstance(matcher, list) and len(matcher) == 3 and matcher[1] == "="
    json.dumps(tree)


# --- the provisioning file ------------------------------------------------------------------

# Field names of Grafana's file-provisioning structs (AlertRuleV1, QueryV1, ContactPointV1).
FILE_RULE_FIELDS = {
    "uid",
    "title",
    "condition",
    "data",
    "dashboardUid",
    "panelId",
    "noDataState",
    "execErrState",
    "for",
    "keepFiringFor",
    "annotations",
    "labels",
    "isPaused",
    "notification_settings",
    "record",
}
FILE_QUERY_FIELDS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}


def test_provisioning_file_is_apiversion_1_with_known_fields() -> None:
    document = yaml.safe_load(provisioning_file())
    assert document["apiVersion"] == 1
    (group,) = document["groups"]
    assert group["name"] == RULE_GROUP and group["folder"] == "Telltale"
    assert group["interval"] == "60s"
    assert {r["uid"] for r in group["rules"]} == set(BY_UID)
    for rule in group["rules"]:
        assert set(rule) <= FILE_RULE_FIELDS
        for query in rule["data"]:
            assert set(query) <= FILE_QUERY_FIELDS
    (contact,) = document["contactPoints"]
    assert contact["receivers"][0]["uid"] == CONTACT_POINT_UID
    (policy,) = document["policies"]
    assert policy["orgId"] == 1 and policy["receiver"] == CONTACT_POINT_UID


def test_file_rules_equal_the_api_rules() -> None:
    document = yaml.safe_load(provisioning_file())
    api = {r["uid"]: r for r in api_payloads().rules}
    for rule in document["groups"][0]["rules"]:
        assert rule == {k: api[rule["uid"]][k] for k in rule}


def test_no_secret_reaches_the_file() -> None:
    text = provisioning_file(GrafanaConfig())
    assert "alert-receiver" in text  # the example contact point, not a configured secret
