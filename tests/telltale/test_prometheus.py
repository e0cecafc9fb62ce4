"""Prometheus: the metrics' bounded labels, the storage gauges, and the generated rule file
(checked by ``promtool`` where it is installed; ``.ci/run`` installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.delivery.prometheus_rules import (
    PROMETHEUS_ALERTS,
    RECORDING_RULES,
    WORKER_JOB,
    prometheus_rules_file,
)
from storage.detections import DetectionRow, insert_detections
from storage.rows import EventRow, ScoreRow, WriteBatch
from streams.errors import InvalidEvent, PartlyInvalid
from streams.events import validate_event
from streams.metrics import (
    DEAD_LETTER_CLASSES,
    OTHER,
    VersionCap,
    WorkerMetrics,
    counting_decoder,
    dead_letter_class,
)
from streams.scoring import Scored, SignalResult
from telltale.serving.metrics import ServeMetrics
from telltale.settings import AuditSettings
from telltale.storage_gauges import StorageGauges

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "alerts" / "prometheus" / "telltale-rules.yaml"
RUNBOOKS = REPO / "alerts" / "runbooks.md"
ALLOWED_LABELS = {"signal", "model", "model_version", "reason", "topic", "partition",
                  "detector"}  # fmt: skip


def samples(registry: CollectorRegistry) -> list[Any]:
    text = generate_latest(registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = [s for s in samples(registry) if s.name == name]
    return sum(s.value for s in found if all(s.labels.get(k) == v for k, v in labels.items()))


def batch(rows: list[tuple[str, str, str, bool]]) -> WriteBatch:
    """One event per row: (event id, model, version, flagged by 'sig')."""
    now = datetime.now(UTC)
    out = WriteBatch()
    for event_id, model, version, flagged in rows:
        out.events.append(EventRow(event_id, now, model, version))
        out.scores.append(ScoreRow(event_id, "sig", 1, now, model, version, 0.9, flagged))
    return out


def test_the_version_cap_holds_with_many_versions() -> None:
    metrics = WorkerMetrics(cap=VersionCap(20))
    rows = [(f"e{i}", "chat", f"v{i}", i % 2 == 0) for i in range(500)]
    rows += [("x1", "image", "v1", True)]
    metrics.counters.written(batch(rows))
    metrics.counters.seen((m, v) for _, m, v, _ in rows)
    registry = metrics.registry
    for name in ("telltale_worker_signal_scored_total", "telltale_worker_events_seen_total",
                 "telltale_worker_events_scored_total"):  # fmt: skip
        chat = {s.labels["model_version"] for s in samples(registry)
                if s.name == name and s.labels["model"] == "chat"}  # fmt: skip
        assert len(chat) == 21 and OTHER in chat  # 20 versions and the rest
        assert value(registry, name, model="chat") == 500  # nothing lost past the cap
        assert value(registry, name, model="image", model_version="v1") == 1
    assert value(registry, "telltale_worker_signal_scored_total", model_version=OTHER) == 480
    assert value(registry, "telltale_worker_signal_flagged_total", model_version=OTHER) == 240
    # the same version keeps its label; a new one after the cap goes to 'other'
    assert metrics.counters.cap.label("chat", "v3") == "v3"
    assert metrics.counters.cap.label("chat", "v999") == OTHER
    with pytest.raises(ValueError, match="at least 1"):
        VersionCap(0)


def test_labels_are_bounded_and_never_ids() -> None:
    metrics = WorkerMetrics()
    metrics.counters.written(batch([("evt-secret-1", "chat", "v1", True)]))
    metrics.dead_letter("processing failed: boom")
    metrics.set_lag({("generations", 0): 5, ("generations", 1): -1})
    for sample in samples(metrics.registry):
        assert set(sample.labels) <= ALLOWED_LABELS
        assert "evt-secret-1" not in sample.labels.values()
    assert value(metrics.registry, "telltale_worker_consumer_lag", partition="0") == 5
    assert value(metrics.registry, "telltale_worker_consumer_lag", partition="1") == 0
    metrics.set_lag({("generations", 2): 7})  # partition 0 and 1 revoked: their series go
    lags = {s.labels["partition"] for s in samples(metrics.registry)
            if s.name == "telltale_worker_consumer_lag"}  # fmt: skip
    assert lags == {"2"}
    assert value(metrics.registry, "telltale_worker_sampling_rate") == 1.0
    metrics.set_sampling_rate(0.25)
    assert value(metrics.registry, "telltale_worker_sampling_rate") == 0.25
    with pytest.raises(ValueError):
        metrics.set_sampling_rate(1.5)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("rejected by the database: Code: 53", "database_rejected"),
        ("too large for the database, alone and after retries: x", "database_overloaded"),
        ("processing failed: RuntimeError: boom", "processing_failed"),
        ("decoding failed: ValueError: x", "decoding_failed"),
        ("missing field 'model_version'", "invalid"),
        ("anything else the decoder says", "invalid"),
    ],
)
def test_dead_letters_are_counted_by_a_bounded_reason_class(reason: str, expected: str) -> None:
    metrics = WorkerMetrics()
    metrics.dead_letter(reason)
    assert dead_letter_class(reason) == expected
    reasons = {s.labels["reason"] for s in samples(metrics.registry)
               if s.name == "telltale_worker_dead_letters_total"}  # fmt: skip
    assert reasons == set(DEAD_LETTER_CLASSES)  # every class exported from the start, at 0
    assert value(metrics.registry, "telltale_worker_dead_letters_total", reason=expected) == 1


def test_the_decoder_counts_the_events_it_yields() -> None:
    metrics = WorkerMetrics()
    good = validate_event({"event_id": "a", "timestamp": "2026-11-01T00:00:00Z", "model": "m",
                           "model_version": "v", "output": {"text": "t"}})  # fmt: skip

    def decode(raw: bytes) -> list[Any]:
        if raw == b"bad":
            raise InvalidEvent("bad")
        if raw == b"part":
            raise PartlyInvalid([good], "1 of 2 invalid")
        return [good, good]

    counted = counting_decoder(decode, metrics.counters)
    assert len(counted(b"ok")) == 2
    with pytest.raises(PartlyInvalid):
        counted(b"part")
    with pytest.raises(InvalidEvent):
        counted(b"bad")
    assert value(metrics.registry, "telltale_worker_events_seen_total", model="m") == 3


def test_the_api_counts_per_signal_model_and_version() -> None:
    metrics = ServeMetrics(VersionCap(2))
    event = validate_event({"event_id": "a", "timestamp": "2026-11-01T00:00:00Z", "model": "m",
                            "model_version": "v1", "output": {"text": "t"}})  # fmt: skip
    results = (SignalResult("sig", 1, "output.text", 0.9, True, "block"),
               SignalResult("other_sig", 2, "output.text", 0.1, False, "log"))  # fmt: skip
    metrics.observe(Scored(event, results, "block", "tiny"))
    registry = metrics.registry
    assert value(registry, "telltale_serve_events_scored_total", model_version="v1") == 1
    assert value(registry, "telltale_serve_signal_scored_total", signal="other_sig") == 1
    assert value(registry, "telltale_serve_signal_flagged_total", signal="sig") == 1
    assert value(registry, "telltale_serve_signal_flagged_total", signal="other_sig") == 0


def test_open_incidents_and_corrected_rates_come_from_storage(ch: Any, chdb_path: Path) -> None:
    from test_trust import _audit_from_truth, _seed_noisy
    from typer.testing import CliRunner

    from telltale.cli import app

    truth = _seed_noisy(ch)
    _audit_from_truth(ch, truth, 240)
    opened = datetime(2026, 9, 14, 9, 0, tzinfo=UTC)

    def detection(i: int, detector: str, resolved: bool) -> DetectionRow:
        closed = opened + timedelta(hours=1) if resolved else None
        return DetectionRow(f"d{i}", detector, f"k{i}", "chat", "v1", "sig",
                            "resolved" if resolved else "firing", opened, closed,
                            5.0, 1.0)  # fmt: skip

    insert_detections(ch, [detection(1, "release_spike", False),
                           detection(2, "release_spike", False),
                           detection(3, "degradation", True)])  # fmt: skip
    registry = CollectorRegistry()
    gauges = StorageGauges(registry, VersionCap(), AuditSettings(), window_s=4 * 3600)
    now = datetime(2026, 9, 14, 12, 0, tzinfo=UTC)  # the log's end: its last 4 hours
    gauges.refresh(ch, now=now)
    assert value(registry, "telltale_open_incidents", detector="release_spike") == 2
    assert value(registry, "telltale_open_incidents", detector="degradation") == 0
    corrected = {(s.labels["model"], s.labels["model_version"]): s.value
                 for s in samples(registry) if s.name == "telltale_corrected_rate"}  # fmt: skip
    assert corrected
    ch.close()  # the CLI opens the path itself
    since = (now - timedelta(hours=4)).isoformat()
    result = CliRunner().invoke(app, ["rates", "--signal", "stock_advice", "--corrected",
                                      "--since", since, "--clickhouse", f"chdb://{chdb_path}",
                                      "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)["rates"]
    expected = {(r["model"], r["model_version"]): r["corrected_rate"] for r in rows}
    assert corrected == pytest.approx(expected)


# --- the rule file --------------------------------------------------------------------------


def exposed_names() -> set[str]:
    """Every series name the worker, the API and the storage gauges expose."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    metrics.counters.written(batch([("e", "m", "v", True)]))
    metrics.counters.seen([("m", "v")])
    metrics.set_lag({("t", 0): 1})
    gauges = StorageGauges(registry, metrics.counters.cap, AuditSettings(), 3600)
    gauges.open_incidents.labels("release_spike").set(0)
    gauges.corrected_rate.labels("s", "m", "v").set(0)
    return {s.name for s in samples(registry)}


def test_rules_use_only_exposed_metrics_and_link_runbooks() -> None:
    names = exposed_names() | {"up"}
    records = {record for record, _ in RECORDING_RULES}
    exprs = [expr for _, expr in RECORDING_RULES] + [a.expr for a in PROMETHEUS_ALERTS]
    for expr in exprs:
        for used in re.findall(r"\b(telltale[a-z_:0-9]*|up)\b(?=[{\[\s)])", expr):
            assert used in names | records, f"{used} in {expr!r} is exposed by no one"
    anchors = set(re.findall(r"^## (\S+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert {a.anchor for a in PROMETHEUS_ALERTS} <= anchors
    assert {"TelltaleWorkerDown", "TelltaleConsumerLagGrowing", "TelltaleDeadLettersSpiking",
            "TelltaleReleaseSpikeOpen"} <= {a.name for a in PROMETHEUS_ALERTS}  # fmt: skip


def test_the_committed_rule_file_matches_the_code() -> None:
    from dashboards import GrafanaConfig

    assert RULES_FILE.read_text() == prometheus_rules_file(GrafanaConfig().runbook_base_url), (
        "run `telltale dashboards build`"
    )


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed here (Debian's `prometheus` package; .ci/run installs it)",
)

UNIT_TESTS = f"""
rule_files: [{RULES_FILE}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'telltale_worker_signal_scored_total{{signal="s",model="m",model_version="v"}}'
        values: '0+60x70'
      - series: 'telltale_worker_signal_flagged_total{{signal="s",model="m",model_version="v"}}'
        values: '0+6x70'
      - series: 'telltale_open_incidents{{detector="release_spike"}}'
        values: '0 0 1 1 1'
      - series: 'up{{job="{WORKER_JOB}",instance="w1:6066"}}'
        values: '1 1 0 0 0 0 0 0 0 0'
      - series: 'telltale_worker_events_seen_total{{model="m",model_version="v"}}'
        values: '0+100x20'
      - series: 'telltale_worker_dead_letters_total{{reason="invalid"}}'
        values: '0+20x20'
      - series: 'telltale_worker_consumer_lag{{topic="generations",partition="0"}}'
        values: '0+200x40'
    promql_expr_test:
      - expr: telltale:signal_flag_rate:5m
        eval_time: 30m
        exp_samples:
          - labels: 'telltale:signal_flag_rate:5m{{signal="s",model="m",model_version="v"}}'
            value: 0.1
      - expr: telltale:signal_flag_rate:1h
        eval_time: 70m
        exp_samples:
          - labels: 'telltale:signal_flag_rate:1h{{signal="s",model="m",model_version="v"}}'
            value: 0.1
"""


FIRING = (  # (alert, evaluated at, its labels beyond the rule's, its summary then)
    ("TelltaleReleaseSpikeOpen", "3m", {"detector": "release_spike"},
     "Failure rate jumped after a release: 1 open incident(s)"),
    ("TelltaleWorkerDown", "9m", {"job": WORKER_JOB, "instance": "w1:6066"},
     "telltale worker w1:6066 is down or not scraped"),
    ("TelltaleDeadLettersSpiking", "15m", {}, "16.67% of records dead-lettered"),
    ("TelltaleConsumerLagGrowing", "35m", {"topic": "generations"},
     "consumer lag on generations is 7000 records and growing"),
)  # fmt: skip


def unit_tests() -> str:
    """``promtool test rules`` input: the series above and the alerts they must fire."""
    import yaml

    from dashboards import GrafanaConfig

    base = GrafanaConfig().runbook_base_url
    document = yaml.safe_load(UNIT_TESTS)
    by_name = {a.name: a for a in PROMETHEUS_ALERTS}
    cases = []
    for name, at, labels, summary in FIRING:
        alert = by_name[name]
        cases.append({"alertname": name, "eval_time": at, "exp_alerts": [{
            "exp_labels": {"severity": alert.severity, "team": alert.team,
                           "component": "telltale", **labels},
            "exp_annotations": {"summary": summary, "description": alert.description,
                                "runbook": alert.runbook,
                                "runbook_url": f"{base}#{alert.anchor}"},
        }]})  # fmt: skip
    document["tests"][0]["alert_rule_test"] = cases
    return str(yaml.safe_dump(document, sort_keys=False))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


@needs_promtool
def test_promtool_checks_the_rule_file() -> None:
    checked = _promtool("check", "rules", str(RULES_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    print(checked.stdout.strip())


@needs_promtool
def test_promtool_unit_tests_of_the_rules(tmp_path: Path) -> None:
    """Recorded flag rates and firing alerts on synthetic series (``promtool test rules``)."""
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(unit_tests())
    tested = _promtool("test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    print(tested.stdout.strip())
