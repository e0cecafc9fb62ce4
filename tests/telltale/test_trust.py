"""Rates you can trust: audit draws, answer imports, measured errors and corrected rates.

The scenario is the slice-regression log (``log_generators.slice_regression_events``: a release
that regresses German free-tier users from 4 % to 40 % failures), scored by a *noisy* signal of
known sensitivity 0.7 and specificity 0.8, as a weak few-shot signal would: every slice then
reads ~20 % flagged and the regressed one does not stand out. Audit answers come from the
planted truth. Everything runs through the CLI on the real ClickHouse engine (chDB).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from log_generators import NEW, OLD, slice_regression_events
from typer.testing import CliRunner

from signals.audit import ErrorModel, StratumCount, allocate, band_of, error_shift
from signals.spec import SignalSpec
from signals.training import fit_signal
from storage.rows import EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter
from streams.events import validate_event
from streams.slices import SliceConfig, Slicer
from telltale.cli import app
from telltale.signal_store import ClickHouseSignalStore
from telltale.trust import read_answers

SENSITIVITY, SPECIFICITY = 0.7, 0.8
runner = CliRunner()


# --- the statistics ---------------------------------------------------------------------------


def test_allocation_spends_the_budget_within_strata_sizes() -> None:
    sizes = {("v1", "flagged"): 300, ("v1", "near"): 970, ("v1", "clear"): 8730,
             ("v2", "flagged"): 3, ("v2", "near"): 10, ("v2", "clear"): 0}  # fmt: skip
    take = allocate(sizes, 80)
    assert sum(take.values()) == 80
    assert take[("v2", "flagged")] == 2 and take[("v2", "near")] == 2  # the floor
    assert ("v2", "clear") not in take  # an empty stratum is not drawn
    assert all(n <= sizes[k] for k, n in take.items())
    assert take[("v1", "clear")] > take[("v1", "flagged")]  # Neyman: N_h·S_h
    assert allocate({("v1", "flagged"): 3}, 80) == {("v1", "flagged"): 3}
    with pytest.raises(ValueError, match="budget"):
        allocate(sizes, 0)


def test_bands() -> None:
    assert band_of(True, 0.1, 0.5) == "flagged"
    assert band_of(False, 0.5, 0.5) == "near"
    assert band_of(False, 0.49, 0.5) == "clear"


def test_many_labels_recover_the_errors_and_the_prevalence() -> None:
    # 10,000 events, 10 % fail; Se 0.8, Sp 0.9: 800 + 900 flagged; every event labelled
    model = ErrorModel([StratumCount(("v", "flagged"), 1700, 1700, 800),
                        StratumCount(("v", "clear"), 8300, 8300, 200)])  # fmt: skip
    est = model.estimate()
    assert est.sensitivity.low < 0.8 < est.sensitivity.high
    assert est.specificity.low < 0.9 < est.specificity.high
    assert abs(est.precision.value - 800 / 1700) < 0.01
    # another row with the same errors and 30 % failures: q = 0.8·0.3 + 0.1·0.7 = 0.31
    corrected = model.correct(5000, 1550)
    assert corrected.low < 0.30 < corrected.high
    assert corrected.high - corrected.low < 0.06
    with pytest.raises(ValueError):
        model.correct(0, 0)


def test_a_chance_level_audit_gives_the_whole_interval() -> None:
    # flagged and unflagged events fail equally often: the flags carry no information
    model = ErrorModel([StratumCount(("v", "flagged"), 500, 40, 20),
                        StratumCount(("v", "clear"), 500, 40, 20)])  # fmt: skip
    corrected = model.correct(1000, 500)
    assert (corrected.low, corrected.high) == (0.0, 1.0)
    assert "chance" in corrected.note


def test_error_shift_between_product_versions() -> None:
    # v2 flags twice as many events; as many of them fail: the specificity fell
    v1 = ErrorModel([StratumCount(("v1", "flagged"), 400, 60, 54),
                     StratumCount(("v1", "clear"), 4000, 40, 1)])  # fmt: skip
    v2 = ErrorModel([StratumCount(("v2", "flagged"), 800, 60, 27),
                     StratumCount(("v2", "clear"), 3600, 40, 1)])  # fmt: skip
    shift = error_shift("v1", "v2", v1, v2)
    assert shift is not None and shift.changed
    assert shift.specificity_difference.high < 0
    assert shift.precision_after.high < shift.precision_before.low
    same = error_shift("v1", "v1b", v1, v1)
    assert same is not None and not same.changed


def test_answers_are_parsed_strictly_and_errors_name_the_line() -> None:
    good = '{"event_id": "a", "label": 1}\n\n{"event_id": "b", "label": 0, "labeller": "ann"}\n'
    answers = read_answers(good)
    assert [(a.line, a.event_id, a.label, a.labeller) for a in answers] == [
        (1, "a", 1, None), (3, "b", 0, "ann")
    ]  # fmt: skip
    for bad, message in [
        ('{"event_id": "a", "label": 1}\n{"event_id": "b", "label": true}', "line 2: label"),
        ('{"event_id": "a", "label": "1"}', "line 1: label"),
        ('{"event_id": "a", "label": 2}', "line 1: label"),
        ('{"event_id": "", "label": 1}', "line 1: event_id"),
        ('{"event_id": "a", "label": 1, "x": 1}', "line 1: unknown keys"),
        ("[1]", "line 1: expected a JSON object"),
        ("{oops", "line 1: not JSON"),
        ('{"event_id": "a", "label": ' + "[" * 980 + "]" * 980 + "}", "line 1: JSON nested"),
        ("\n\n", "no answer"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_answers(bad)


# --- the whole flow on chDB -------------------------------------------------------------------


def _seed_noisy(
    ch: Any,
    errors: dict[str, tuple[float, float]] | None = None,
    regressed_rate: float = 0.40,
    per_minute: int = 6,
    flags: dict[str, bool] | None = None,
) -> dict[str, bool]:
    """Store the slice-regression log scored by a noisy signal; return the planted truth.

    ``errors``: (sensitivity, specificity) per product version (default 0.7/0.8 on both)."""
    store = ClickHouseSignalStore(ch)
    rng = np.random.default_rng(3)
    fitted = fit_signal(
        SignalSpec(name="stock_advice", description="recommends buying or selling stocks"),
        rng.normal(1.0, 1.0, (6, 16)).astype(np.float32),
        rng.normal(-1.0, 1.0, (6, 16)).astype(np.float32), "tiny",
    )  # fmt: skip
    fitted = store.save(fitted)
    assert fitted.version == 1
    slicer = Slicer(SliceConfig(keys=("locale", "customer_tier")))
    noise = random.Random(11)
    truth: dict[str, bool] = {}
    batch = WriteBatch()
    for payload in slice_regression_events(per_minute=per_minute, seed=5,
                                           regressed_rate=regressed_rate):  # fmt: skip
        event = validate_event(payload)
        failed = not (event.output.text or "").startswith("Here is a short answer")
        se, sp = (errors or {}).get(event.model_version, (SENSITIVITY, SPECIFICITY))
        flagged = noise.random() < (se if failed else 1 - sp)
        score = noise.uniform(0.5, 1.0) if flagged else noise.uniform(0.0, 0.5)
        truth[event.event_id] = failed
        if flags is not None:
            flags[event.event_id] = flagged
        batch.scores.append(ScoreRow(
            event.event_id, "stock_advice", 1, event.timestamp, event.model,
            event.model_version, score, flagged, slicer.values(event),
        ))  # fmt: skip
        batch.events.append(EventRow(event.event_id, event.timestamp, event.model,
                                     event.model_version, app=event.app,
                                     output_text=event.output.text or "",
                                     attributes=dict(event.attributes)))  # fmt: skip
    ClickHouseWriter(ch).write(batch)
    return truth


def _cli(chdb_path: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--clickhouse", f"chdb://{chdb_path}", "--format", "json"])
    return result


def _json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_audit_import_and_corrected_rates_on_a_noisy_signal(
    ch: Any, chdb_path: Path, tmp_path: Path
) -> None:
    flags: dict[str, bool] = {}
    truth = _seed_noisy(ch, flags=flags)
    ch.close()  # one chDB client per path and process: the CLI opens its own
    # the signal's realised errors on this log (nominal 0.7 / 0.8)
    sensitivity = sum(flags[e] for e in truth if truth[e]) / sum(truth.values())
    specificity = sum(not flags[e] for e in truth if not truth[e]) / (
        len(truth) - sum(truth.values())
    )

    before = _json(_cli(chdb_path, "rates", "--signal", "stock_advice", "--corrected"))
    assert all(r["corrected_rate"] is None and r["correction"]["note"] == "signal not audited"
               for r in before["rates"])  # fmt: skip

    drawn = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--n", "240",
                       "--audit-id", "first"))  # fmt: skip
    events = drawn["events"]
    assert len(events) == 240 and len({e["event_id"] for e in events}) == 240
    assert {e["stratum"] for e in events} == {"flagged", "near", "clear"}
    for e in events:
        key = (e["model_version"], e["stratum"])
        stratum = next(s for s in drawn["strata"] if (s["model_version"], s["stratum"]) == key)
        assert e["inclusion_probability"] == pytest.approx(stratum["drawn"] / stratum["size"])
        assert e["content"]  # the signal's field: the answer text
    assert drawn["estimates"]["audited"] is False

    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(
        json.dumps({"event_id": e["event_id"], "label": int(truth[e["event_id"]])}) + "\n"
        for e in events
    ))  # fmt: skip
    imported = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--labels",
                          str(answers)))  # fmt: skip
    assert imported["imported"] == {"new": 240, "unchanged": 0, "changed": 0}
    estimates = imported["estimates"]["all_versions"]
    assert estimates["labelled"] == 240
    assert estimates["sensitivity"]["low"] < sensitivity < estimates["sensitivity"]["high"]
    assert estimates["specificity"]["low"] < specificity < estimates["specificity"]["high"]

    again = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--labels", str(answers)))
    assert again["imported"] == {"new": 0, "unchanged": 240, "changed": 0}

    # a bad file imports nothing and names its line
    first = events[0]["event_id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"event_id": first, "label": 1 - int(truth[first])}) + "\n"
                   + json.dumps({"event_id": "nope", "label": 1}) + "\n")  # fmt: skip
    refused = _cli(chdb_path, "signals", "audit", "stock_advice", "--labels", str(bad))
    assert refused.exit_code != 0 and "line 2: unknown event 'nope'" in _flat(refused.output)
    # nothing of the bad file was stored: the flipped label of line 1 is not there
    again = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--labels", str(answers)))
    assert again["imported"] == {"new": 0, "unchanged": 240, "changed": 0}
    undrawn = next(e for e in truth if e not in {x["event_id"] for x in events})
    bad.write_text(json.dumps({"event_id": undrawn, "label": 1}) + "\n")
    refused = _cli(chdb_path, "signals", "audit", "stock_advice", "--labels", str(bad))
    assert refused.exit_code != 0 and "was not drawn in an audit" in _flat(refused.output)

    rates = _json(_cli(chdb_path, "rates", "--signal", "stock_advice", "--corrected"))
    total_events = sum(r["events"] for r in rates["rates"])
    assert total_events == len(truth)
    for r in rates["rates"]:
        assert {"rate", "rate_low", "rate_high", "corrected_rate", "corrected_low",
                "corrected_high"} <= set(r)  # fmt: skip
        assert r["corrected_low"] <= r["corrected_rate"] <= r["corrected_high"]
        assert r["corrected_rate"] < r["rate"]  # the flag rate overstates a rare failure

    for r in rates["rates"]:  # repeated answers share a flag: fewer independent events
        assert 0 < r["correction"]["effective_events"] < r["events"]
    hourly = _json(_cli(chdb_path, "rates", "--signal", "stock_advice", "--bucket", "hour",
                        "--corrected"))  # fmt: skip
    assert len(hourly["rates"]) > len(rates["rates"])
    assert all(0 < r["correction"]["effective_events"] <= r["events"] for r in hourly["rates"])

    sliced = _json(_cli(chdb_path, "rates", "--signal", "stock_advice", "--by", "locale",
                        "--by", "customer_tier", "--corrected"))  # fmt: skip
    both = [r for r in sliced["rates"]
            if r["by"] == ["locale", "customer_tier"] and r["model_version"] == NEW]  # fmt: skip
    regressed = next(r for r in both if r["values"] == ["de", "free"])
    others = [r for r in both if r["values"] != ["de", "free"] and r["events"] >= 100]
    assert others
    raw_ratio = regressed["rate"] / max(r["rate"] for r in others)
    corrected_ratio = regressed["corrected_rate"] / max(r["corrected_rate"] for r in others)
    assert corrected_ratio > 2 * raw_ratio
    assert regressed["corrected_low"] > max(r["corrected_rate"] for r in others)
    print(
        f"de|free vs the highest other slice: raw {regressed['rate']:.3f} vs "
        f"{max(r['rate'] for r in others):.3f} (×{raw_ratio:.2f}); corrected "
        f"{regressed['corrected_rate']:.3f} vs {max(r['corrected_rate'] for r in others):.3f} "
        f"(×{corrected_ratio:.2f})"
    )


def _audit_from_truth(ch: Any, truth: dict[str, bool], labels: int) -> None:
    from telltale.trust import Answer, draw, import_answers

    fitted = ClickHouseSignalStore(ch).get("stock_advice")
    assert fitted is not None
    drawn = draw(ch, fitted, labels, audit_id="test-audit")
    answers = [Answer(i, x.event_id, int(truth[x.event_id]), None)
               for i, x in enumerate(drawn.samples, 1)]  # fmt: skip
    import_answers(ch, "stock_advice", answers, labeller="test")


def _release_incident(ch: Any) -> dict[str, Any]:
    from alerts.delivery.backtest import backtest
    from alerts.settings import MonitorConfig
    from telltale.trust import release_instrument

    report = backtest(ch, MonitorConfig(), instrument=release_instrument(ch))
    spikes = [d for d in report.detections if d.detector == "release_spike"]
    assert [(d.model_version, d.signal) for d in spikes] == [(NEW, "stock_advice")]
    found: dict[str, Any] = spikes[0].details["signals"][0]["instrument"]
    return found


def test_a_release_incident_says_the_product_changed(ch: Any) -> None:
    """German free-tier answers fail 90 % of the time on the new version; the signal's errors
    are the same on both versions."""
    same = (0.8, 0.95)
    truth = _seed_noisy(ch, errors={OLD: same, NEW: same}, regressed_rate=0.9, per_minute=20)
    _audit_from_truth(ch, truth, 300)
    instrument = _release_incident(ch)
    assert instrument["audited"] is True
    before, after = instrument["corrected_before"], instrument["corrected_after"]
    assert after["corrected_rate"] > before["corrected_rate"]
    assert instrument["changed"] == "product", instrument
    assert instrument["error_shift"] is not None
    assert instrument["error_shift"]["changed"] is False


def test_a_release_incident_says_the_instrument_changed(ch: Any) -> None:
    """No failure rate changes; the new version's answers fool the signal (specificity 0.95 on
    the old version, 0.75 on the new): flags jump, the release test fires on them, and the
    audit says the instrument, not the product, changed."""
    truth = _seed_noisy(ch, errors={OLD: (0.7, 0.95), NEW: (0.7, 0.75)}, regressed_rate=0.04,
                        per_minute=20)  # fmt: skip
    _audit_from_truth(ch, truth, 300)
    instrument = _release_incident(ch)
    assert instrument["changed"] == "instrument", instrument
    assert instrument["error_shift"]["specificity_difference"]["high"] < 0


def test_a_release_incident_of_an_unaudited_signal_says_so(ch: Any) -> None:
    same = (0.8, 0.95)
    _seed_noisy(ch, errors={OLD: same, NEW: same}, regressed_rate=0.9, per_minute=20)
    instrument = _release_incident(ch)
    assert instrument["audited"] is False and "flag rates" in instrument["note"]


def test_effective_events_count_repeated_contents_once_per_copy(ch: Any) -> None:
    """Ten events, one answer repeated five times: worth 10² / (5² + 5·1²) = 3.33 events."""
    from datetime import UTC, datetime

    from storage.effective import effective_events

    at = datetime(2026, 12, 1, tzinfo=UTC)
    batch = WriteBatch()
    for i in range(10):
        text = "the same retried answer" if i < 5 else f"answer {i}"
        batch.events.append(EventRow(f"e{i}", at, "m", "v1", output_text=text))
        batch.scores.append(ScoreRow(f"e{i}", "s", 1, at, "m", "v1", 0.9, i < 5))
    ClickHouseWriter(ch).write(batch)
    worth = effective_events(ch, "s", "output.text")
    assert worth == {("s", "m", "v1", ()): pytest.approx(100 / 30)}
    hourly = effective_events(ch, "s", "output.text", by="hour")
    assert hourly == {("s", "m", "v1", ("2026-12-01 00:00:00",)): pytest.approx(100 / 30)}
    model = ErrorModel([StratumCount(("v1", "flagged"), 500, 40, 36),
                        StratumCount(("v1", "clear"), 500, 40, 2)])  # fmt: skip
    wide = model.correct(1000, 500, effective_events=50)
    narrow = model.correct(1000, 500)
    assert wide.high - wide.low > narrow.high - narrow.low


def test_the_judge_labels_a_drawn_sample_and_its_agreement_is_reported(
    ch: Any, chdb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local chat-completions server plays the judge: it answers from the planted truth of
    the content it is shown, except for one content in ten, where it says the opposite."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    flags: dict[str, bool] = {}
    truth = _seed_noisy(ch, flags=flags)
    contents = {
        str(r[0]): str(r[1])
        for r in ch.query("SELECT event_id, output_text FROM events").result_rows
    }
    ch.close()
    by_content: dict[str, bool] = {contents[e]: t for e, t in truth.items()}
    seen: list[dict[str, Any]] = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                         "keys": sorted(body)})  # fmt: skip
            user = body["messages"][-1]["content"]
            content = next(c for c in by_content if c in user)
            label = int(by_content[content])
            if len(seen) % 10 == 0:
                label = 1 - label
            answer = {"id": "x", "object": "chat.completion", "created": 0,
                      "model": body["model"], "choices": [{
                          "index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": json.dumps({"label": label})},
                      }]}  # fmt: skip
            raw = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("TELLTALE_JUDGE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("TELLTALE_JUDGE_MODEL", "local-judge")
        monkeypatch.setenv("TELLTALE_JUDGE_API_KEY", "sk-judge-secret")
        drawn = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--n", "60",
                           "--audit-id", "j"))  # fmt: skip
        answers = tmp_path / "answers.jsonl"
        answers.write_text("".join(
            json.dumps({"event_id": e["event_id"], "label": int(truth[e["event_id"]])}) + "\n"
            for e in drawn["events"]
        ))  # fmt: skip
        _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--labels", str(answers)))
        result = _cli(chdb_path, "signals", "audit", "stock_advice", "--n", "60",
                      "--audit-id", "j", "--judge")  # fmt: skip
        # a second draw that only the judge labels
        other = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--n", "60",
                           "--audit-id", "k", "--judge"))  # fmt: skip
        monkeypatch.setenv("TELLTALE_AUDIT_USE_JUDGE_LABELS", "true")
        with_judge = _json(_cli(chdb_path, "signals", "audit", "stock_advice", "--labels",
                                str(answers)))  # fmt: skip
    finally:
        server.shutdown()
    assert "sk-judge-secret" not in result.output
    judged = _json(result)
    assert {s["path"] for s in seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in seen} == {"Bearer sk-judge-secret"}
    judge = judged["judge"]
    assert judge["labeller"] == "judge:local-judge"
    assert (judge["asked"], judge["labelled"], judge["no_label"]) == (60, 60, 0)
    assert judge["agreement_with_people"] == {"pairs": 60, "agreement": 0.9}
    # off by default: the judge's labels do not enter the estimates
    assert judged["estimates"]["all_versions"]["labelled"] == 60
    k_ids = {e["event_id"] for e in other["events"]}
    both = k_ids & {e["event_id"] for e in drawn["events"]}  # drawn by both: counted in each
    assert other["estimates"]["all_versions"]["labelled"] == 60 + len(both)
    assert with_judge["estimates"]["all_versions"]["labelled"] == 120
