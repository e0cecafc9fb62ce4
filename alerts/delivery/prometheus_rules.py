"""Prometheus recording and alerting rules over the worker's ``/metrics`` (``streams.metrics``).

The Prometheus twin of :mod:`alerts.delivery.rules` for teams whose on-call lives in
Prometheus/Alertmanager: ``telltale dashboards build`` writes it to
``alerts/prometheus/telltale-rules.yaml`` (a ``rule_files`` entry of Prometheus, checked
with ``promtool check rules``).

* recording rules: the flag rate per ``(signal, model, model_version)`` over 5 minutes and
  1 hour (flags ÷ scores of the worker's counters), the events scored per second per model
  and version, the dead-letter ratio and the consumer lag per topic;
* alerts: the worker is down (its scrape target is down or missing), the consumer lag keeps
  growing, dead letters spike, and one alert per statistical detector while the monitor holds an
  open incident (``telltale_open_incidents``), with the severity and runbook of the Grafana rule
  of the same detector.

Every alert carries ``severity``, ``team`` and ``component`` labels and ``summary``,
``description``, ``runbook`` and ``runbook_url`` annotations (``runbook_base_url#anchor`` into
``alerts/runbooks.md``, as the Grafana rules). The worker's scrape job must be named
:data:`WORKER_JOB` for the worker-down alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from alerts.delivery.rules import RULES, RuleSpec
from alerts.tracks import DEGRADATION, PROMPT_DRIFT, RELEASE_SPIKE

__all__ = [
    "DEAD_LETTER_RATIO",
    "LAG_RECORDS",
    "PROMETHEUS_ALERTS",
    "RECORDING_RULES",
    "WORKER_JOB",
    "PrometheusAlert",
    "prometheus_rules_file",
]

WORKER_JOB = "telltale-worker"
"""The scrape job of the workers' ``/metrics`` (their health port)."""

LAG_RECORDS = 1000
"""Consumer lag (records of one topic) above which a still-growing lag alerts."""

DEAD_LETTER_RATIO = 0.05
"""Share of received records dead-lettered over 5 minutes that alerts (the Grafana rule's 5 %)."""

DEAD_LETTER_MIN_PER_5M = 10
"""…and at least this many dead letters in those 5 minutes (a trickle is not a spike)."""

_BY_SIGNAL = "signal, model, model_version"


def _flag_rate(window: str) -> str:
    return (
        f"sum by ({_BY_SIGNAL}) (rate(telltale_worker_signal_flagged_total[{window}]))\n"
        f"/\nsum by ({_BY_SIGNAL}) (rate(telltale_worker_signal_scored_total[{window}]))"
    )


_DEAD_LETTER_RATIO_5M = (
    "sum(rate(telltale_worker_dead_letters_total[5m]))\n/\n"
    "clamp_min(sum(rate(telltale_worker_events_seen_total[5m]))"
    " + sum(rate(telltale_worker_dead_letters_total[5m])), 1e-9)"
)
_LAG_BY_TOPIC = "sum by (topic) (telltale_worker_consumer_lag)"

RECORDING_RULES: tuple[tuple[str, str], ...] = (
    ("telltale:signal_flag_rate:5m", _flag_rate("5m")),
    ("telltale:signal_flag_rate:1h", _flag_rate("1h")),
    (
        "telltale:events_scored:rate5m",
        "sum by (model, model_version) (rate(telltale_worker_events_scored_total[5m]))",
    ),
    ("telltale:dead_letter_ratio:5m", _DEAD_LETTER_RATIO_5M),
    ("telltale:consumer_lag:sum", _LAG_BY_TOPIC),
)
"""``(record, expr)`` of the recording group. The alerts spell their expressions out rather
than read these: a group reads another group's latest evaluation, one interval behind."""


@dataclass(frozen=True)
class PrometheusAlert:
    """One alerting rule and what on-call is told."""

    name: str
    expr: str
    pending_for: str
    severity: Literal["critical", "warning"]
    team: str
    summary: str
    description: str
    runbook: str
    anchor: str
    """The runbook section (``## <anchor>`` in ``alerts/runbooks.md``)."""


def _spec(uid: str) -> RuleSpec:
    return next(spec for spec in RULES if spec.uid == uid)


def _incident_alert(detector: str, name: str) -> PrometheusAlert:
    spec = _spec(f"telltale-{detector.replace('_', '-')}")
    return PrometheusAlert(
        name=name,
        expr=f'max by (detector) (telltale_open_incidents{{detector="{detector}"}}) > 0',
        pending_for="0s",  # the detector already did the statistics
        severity=spec.severity,
        team=spec.team,
        summary=f"{spec.title}: {{{{ $value }}}} open incident(s)",
        description=f"The {detector} detector holds open detections (`telltale detections "
        "--state open` names the model, version and signal).",
        runbook=spec.runbook,
        anchor=spec.anchor,
    )


PROMETHEUS_ALERTS: tuple[PrometheusAlert, ...] = (
    PrometheusAlert(
        name="TelltaleWorkerDown",
        expr=f'up{{job="{WORKER_JOB}"}} == 0 or absent(up{{job="{WORKER_JOB}"}})',
        pending_for="5m",
        severity="critical",
        team="ml-platform",
        summary="telltale worker {{ $labels.instance }} is down or not scraped",
        description="Prometheus cannot scrape a telltale worker's /metrics (or finds no worker "
        "target at all) for 5 minutes: events are not being scored.",
        runbook="Check `docker compose ps worker` and its logs, its /healthz and /readyz, and the "
        "scrape target (TELLTALE_WORKER_HEALTH_PORT, TELLTALE_WORKER_HEALTH_HOST).",
        anchor="telltale-worker-down",
    ),
    PrometheusAlert(
        name="TelltaleConsumerLagGrowing",
        expr=f"{_LAG_BY_TOPIC} > {LAG_RECORDS}\n"
        "and\nsum by (topic) (deriv(telltale_worker_consumer_lag[15m])) > 0",
        pending_for="15m",
        severity="warning",
        team="ml-platform",
        summary="consumer lag on {{ $labels.topic }} is {{ $value }} records and growing",
        description=f"The workers' consumer group is more than {LAG_RECORDS} records behind on "
        "the topic and the lag kept growing for 15 minutes: the workers cannot keep up.",
        runbook="Open Pipeline health; scale workers up to the partition count; check the "
        "embedder's throughput and the storage write latency.",
        anchor="telltale-consumer-lag",
    ),
    PrometheusAlert(
        name="TelltaleDeadLettersSpiking",
        expr=f"({_DEAD_LETTER_RATIO_5M}) > {DEAD_LETTER_RATIO}\n"
        f"and\nsum(increase(telltale_worker_dead_letters_total[5m])) >= {DEAD_LETTER_MIN_PER_5M}",
        pending_for="5m",
        severity="warning",
        team="ml-platform",
        summary="{{ $value | humanizePercentage }} of records dead-lettered",
        description=f"More than {DEAD_LETTER_RATIO:.0%} of the records the workers received in "
        "5 minutes were dead-lettered (`telltale_worker_dead_letters_total` by `reason` says "
        "which class).",
        runbook=_spec("telltale-dead-letters").runbook,
        anchor="telltale-dead-letters",
    ),
    _incident_alert(RELEASE_SPIKE, "TelltaleReleaseSpikeOpen"),
    _incident_alert(DEGRADATION, "TelltaleDegradationOpen"),
    _incident_alert(PROMPT_DRIFT, "TelltalePromptDriftOpen"),
)


def prometheus_rules_file(runbook_base_url: str) -> str:
    """The rule file (Prometheus ``rule_files`` YAML) with runbook links under the base URL."""
    recording = [{"record": record, "expr": expr} for record, expr in RECORDING_RULES]
    alerting: list[dict[str, Any]] = [
        {
            "alert": a.name,
            "expr": a.expr,
            "for": a.pending_for,
            "labels": {"severity": a.severity, "team": a.team, "component": "telltale"},
            "annotations": {
                "summary": a.summary,
                "description": a.description,
                "runbook": a.runbook,
                "runbook_url": f"{runbook_base_url}#{a.anchor}",
            },
        }
        for a in PROMETHEUS_ALERTS
    ]
    document = {
        "groups": [
            {"name": "telltale-recording", "rules": recording},
            {"name": "telltale-alerts", "rules": alerting},
        ]
    }
    header = (
        "# Generated by `telltale dashboards build` from alerts/delivery/prometheus_rules.py;"
        " do not edit.\n"
    )
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                              width=100)  # fmt: skip


class _Dumper(yaml.SafeDumper):
    """Writes a multi-line expression as a literal block, as one would by hand."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)
