"""Grafana alert rules as code: page on open detections, and on a pipeline that stops or lags.

Rules are built with grafana-foundation-sdk on the same ClickHouse data source and the same
named queries as the dashboards (``dashboards.queries``), so the tests execute exactly the SQL
Grafana evaluates. Each rule is a ClickHouse query ``A`` (a table: one numeric column, string
columns become instance labels) and a threshold expression ``B``.

* one rule per statistical detector — ``release_spike``, ``degradation``, ``prompt_drift`` —
  firing per (model, model_version, signal) row of open detections in the ``detections`` table
  the monitor writes;
* guard rules: **pipeline stalled** (no event stored for 10 minutes) and **ingest lag high**
  (p95 event-time-to-stored-row over 5 minutes). The dead-letter topic and consumer lag live
  in Kafka, not ClickHouse, so the lag rule is their proxy: a worker that dead-letters or falls
  behind stores late or nothing, which one of the two guards catches.

Routing labels: ``severity`` (critical pages, warning notifies), ``team`` and ``component``;
``signal`` comes from the query row. Annotations carry a summary, a description, the runbook
steps and an absolute ``runbook_url`` into ``alerts/runbooks.md`` (``runbook_base_url``, by
default the runbook page of ``telltale alerts receiver``, the stack's ``alert-receiver``
service). Release-spike alerts carry the top slice of their localisation as the ``top_slice``
label and in their summary.

The same objects come out two ways: :func:`api_payloads` for the alerting provisioning HTTP
API and :func:`provisioning_file` for Grafana's file provisioning (apiVersion 1). Where they go
(folder, organisation, webhook, runbook base URL) is :class:`dashboards.settings.GrafanaConfig`,
the settings ``dashboards push`` uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from alerts.delivery.incident import rule_uid
from alerts.tracks import DEGRADATION, PROMPT_DRIFT, RELEASE_SPIKE
from dashboards import (
    DATASOURCE_UID,
    DEAD_LETTER_SHARE_RECENT,
    INGEST_LAG_RECENT,
    SECONDS_SINCE_LAST_EVENT,
    ClickHouseQueryBuilder,
    GrafanaConfig,
    NamedQuery,
    open_detections_for,
    plain,
)

__all__ = [
    "CONTACT_POINT_UID",
    "RULES",
    "RULE_GROUP",
    "AlertingPayloads",
    "Route",
    "RuleSpec",
    "api_payloads",
    "provisioning_file",
]

RULE_GROUP = "telltale"
# Grafana's default evaluation interval; rules POSTed into a new group get it too.
GROUP_INTERVAL_S = 60
CONTACT_POINT_UID = "telltale-webhook"
RUNBOOKS = "runbooks.md"
_EXPRESSION_UID = "__expr__"

Comparison = Literal["gt", "lt"]
NoDataState = Literal["OK", "NoData", "Alerting"]


@dataclass(frozen=True)
class RuleSpec:
    """One alert rule: its query, when it fires, and what on-call is told."""

    uid: str
    title: str
    query: NamedQuery
    comparison: Comparison
    threshold: float
    pending_for: str
    severity: Literal["critical", "warning"]
    team: str
    summary: str
    description: str
    runbook: str
    no_data: NoDataState = "OK"
    window_s: int = 600

    @property
    def anchor(self) -> str:
        """The runbook section of this rule (``## <uid>`` in ``runbooks.md``)."""
        return self.uid


def _detector_rule(
    detector: str, title: str, severity: Literal["critical", "warning"], runbook: str
) -> RuleSpec:
    return RuleSpec(
        uid=rule_uid(detector),
        title=title,
        query=open_detections_for(detector),
        comparison="gt",
        threshold=0,
        pending_for="0s",
        severity=severity,
        team="ml-quality",
        summary=f"{title}: {{{{ $labels.model }}}} {{{{ $labels.model_version }}}}"
        " {{ $labels.signal }}"
        # Release spikes name the slice where the excess failures concentrate
        # (alerts.tracks.localize).
        + (
            " {{ if $labels.top_slice }}(concentrated in {{ $labels.top_slice }}){{ end }}"
            if detector == RELEASE_SPIKE
            else ""
        ),
        description=f"The {detector} detector has an open detection for model "
        "{{ $labels.model }} version {{ $labels.model_version }}, signal {{ $labels.signal }}.",
        runbook=runbook,
    )


RULES: tuple[RuleSpec, ...] = (
    _detector_rule(
        RELEASE_SPIKE,
        "Failure rate jumped after a release",
        "critical",
        "Open the Overview dashboard at the release marker; compare the version's rate with the "
        "baseline in 'Signals that changed most'; roll back or pin the previous version if the "
        "effect interval excludes zero.",
    ),
    _detector_rule(
        DEGRADATION,
        "Failure rate creeping up within a version",
        "warning",
        "Open Signal drill-down for the signal; check 'Recent flagged events' for a new kind of "
        "prompt or output; look for upstream changes (retrieval, prompt templates).",
    ),
    _detector_rule(
        PROMPT_DRIFT,
        "Users' prompts drifted from the reference",
        "warning",
        "Open Prompt drift; the clusters that grew name the new kind of prompt; decide whether "
        "signals and evaluation sets need examples of it.",
    ),
    RuleSpec(
        uid="telltale-pipeline-stalled",
        title="Pipeline stalled: no events stored",
        query=SECONDS_SINCE_LAST_EVENT,
        comparison="gt",
        threshold=600,
        pending_for="0s",
        severity="critical",
        team="ml-platform",
        summary="No event stored for {{ humanizeDuration $values.A.Value }}",
        description="telltale stored no event for over 10 minutes: the worker is down, stuck, "
        "or dead-lettering everything, or the applications stopped emitting.",
        runbook="Check `docker compose ps worker` and its logs; check the consumer group's lag "
        "and the `generations.dlq` topic in Kafka; check ClickHouse is writable.",
        no_data="Alerting",
    ),
    RuleSpec(
        uid="telltale-dead-letters",
        title="Dead-letter rate high",
        query=DEAD_LETTER_SHARE_RECENT,
        comparison="gt",
        threshold=0.05,
        pending_for="5m",
        severity="warning",
        team="ml-platform",
        summary="{{ humanizePercentage $values.A.Value }} of payloads dead-lettered",
        description="More than 5% of the payloads of the last 15 minutes were refused by the "
        "worker: an application emits malformed events, or a field changed.",
        runbook="Open Pipeline health; read the reasons in the `generations.dlq` topic (or the "
        "`dead_letters` table); fix the emitter, then replay the dead letters if needed.",
    ),
    RuleSpec(
        uid="telltale-ingest-lag",
        title="Ingest lag high (consumer-lag proxy)",
        query=INGEST_LAG_RECENT,
        comparison="gt",
        threshold=120,
        pending_for="5m",
        severity="warning",
        team="ml-platform",
        summary="p95 ingest lag {{ humanize $values.A.Value }} s",
        description="Events are stored more than 2 minutes after their own timestamp (p95 over "
        "15 minutes): the workers are falling behind. Consumer lag is in Kafka, not "
        "ClickHouse; this is its proxy.",
        runbook="Open Pipeline health; scale workers up to the partition count "
        "(`docker compose up -d --scale worker=3`); check the embedder's throughput and the "
        "`generations.dlq` topic.",
    ),
)


@dataclass(frozen=True)
class Route:
    """A notification-policy route. Matchers are ``(label, op, value)``, as Grafana's
    ``object_matchers`` expects them (the SDK's matcher model serialises another shape)."""

    receiver: str
    matchers: tuple[tuple[str, Literal["=", "!=", "=~", "!~"], str], ...] = ()
    group_by: tuple[str, ...] = ()
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    routes: tuple[Route, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"receiver": self.receiver}
        if self.group_by:
            out["group_by"] = list(self.group_by)
        if self.matchers:
            out["object_matchers"] = [list(m) for m in self.matchers]
        for key in ("group_wait", "group_interval", "repeat_interval"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.routes:
            out["routes"] = [r.to_json() for r in self.routes]
        return out


@dataclass(frozen=True)
class AlertingPayloads:
    """Bodies for the alerting provisioning API, one per object, plus the policy tree."""

    rules: tuple[dict[str, Any], ...]
    contact_point: dict[str, Any]
    policy_tree: dict[str, Any]


def notification_policy() -> Route:
    """Everything goes to the example webhook; critical alerts repeat hourly, others daily."""
    return Route(
        receiver=CONTACT_POINT_UID,
        group_by=("grafana_folder", "alertname", "signal"),
        group_wait="30s",
        group_interval="5m",
        repeat_interval="24h",
        routes=(
            Route(CONTACT_POINT_UID, (("severity", "=", "critical"),), repeat_interval="1h"),
            Route(CONTACT_POINT_UID, (("team", "=", "ml-platform"),), group_by=("alertname",)),
        ),
    )


def _rule(spec: RuleSpec, options: GrafanaConfig) -> alerting.Rule:
    query = (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=spec.window_s, to=0))
        .model(ClickHouseQueryBuilder(spec.query, "table"))
    )
    threshold = (
        expr.TypeThreshold()
        .ref_id("B")
        .expression("A")
        .datasource(dashboard_models.DataSourceRef(type_val=_EXPRESSION_UID, uid=_EXPRESSION_UID))
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator()
                    .type(spec.comparison)
                    .params([spec.threshold])
                )
            ]
        )
    )
    condition = (
        alerting.Query("B")
        .datasource_uid(_EXPRESSION_UID)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=0, to=0))
        .model(threshold)
    )
    return (
        alerting.Rule(spec.title)
        .uid(spec.uid)
        .org_id(options.org_id)
        .folder_uid(options.folder_uid)
        .rule_group(RULE_GROUP)
        .queries([query, condition])
        .condition("B")
        .for_val(spec.pending_for)
        .no_data_state(spec.no_data)
        .exec_err_state("Error")
        .is_paused(False)
        .labels({"severity": spec.severity, "team": spec.team, "component": "telltale"})
        .annotations(
            {
                "summary": spec.summary,
                "description": spec.description,
                "runbook": spec.runbook,
                "runbook_url": f"{options.runbook_base_url}#{spec.anchor}",
            }
        )
    )


def _contact_point(options: GrafanaConfig) -> alerting.ContactPoint:
    return (
        alerting.ContactPoint()
        .uid(CONTACT_POINT_UID)
        .name(CONTACT_POINT_UID)
        .type("webhook")
        .settings({"url": options.webhook_url.get_secret_value(), "httpMethod": "POST"})
        .disable_resolve_message(False)
    )


def api_payloads(options: GrafanaConfig | None = None) -> AlertingPayloads:
    """Bodies for ``/api/v1/provisioning/alert-rules``, ``/contact-points`` and ``/policies``."""
    options = options or GrafanaConfig()
    return AlertingPayloads(
        rules=tuple(plain(_rule(spec, options).build()) for spec in RULES),
        contact_point=plain(_contact_point(options).build()),
        policy_tree=notification_policy().to_json(),
    )


_FILE_RULE_KEYS = (
    "uid",
    "title",
    "condition",
    "data",
    "for",
    "noDataState",
    "execErrState",
    "isPaused",
    "labels",
    "annotations",
)

_FILE_HEADER = """\
# Grafana alerting provisioning (apiVersion 1): telltale's alert rules, an example contact
# point and notification policy. Mounted by docker-compose at
# /etc/grafana/provisioning/alerting. Note that provisioning a policy tree replaces the
# organisation's whole tree. Generated by `telltale dashboards build` from alerts/rules.py:
# edit that, not this.
"""


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (SQL) as ``|`` blocks, so the file stays readable and diffable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def provisioning_file(options: GrafanaConfig | None = None) -> str:
    """The alerting provisioning file: rule group, contact point and policy tree."""
    options = options or GrafanaConfig()
    payloads = api_payloads(options)
    contact = payloads.contact_point
    document = {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": options.org_id,
                "name": RULE_GROUP,
                "folder": options.folder_title,
                "interval": f"{GROUP_INTERVAL_S}s",
                "rules": [{k: r[k] for k in _FILE_RULE_KEYS} for r in payloads.rules],
            }
        ],
        "contactPoints": [
            {
                "orgId": options.org_id,
                "name": contact["name"],
                "receivers": [
                    {
                        "uid": contact["uid"],
                        "type": contact["type"],
                        "settings": contact["settings"],
                        "disableResolveMessage": contact["disableResolveMessage"],
                    }
                ],
            }
        ],
        "policies": [{"orgId": options.org_id, **payloads.policy_tree}],
    }
    body = yaml.dump(
        document, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=4096
    )
    return _FILE_HEADER + "\n" + body
