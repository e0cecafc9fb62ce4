"""Delayed feedback on real chDB: the record, the join in either order, idempotence, replay,
``rates``, ``signals suggest --from-feedback`` and the release test on the feedback series."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alerts_seed import T0, traffic
from test_cli_alerts import _invoke
from typer.testing import CliRunner

from signals.bank import SignalBank
from signals.open_clip_embedder import OpenClipEmbedder
from storage.client import connect
from storage.feedback import NEGATIVE_FEEDBACK, feedback_summary, record_feedback
from storage.migrate import migrate
from storage.queries import failure_rates
from storage.writer import ClickHouseWriter
from streams.errors import InvalidEvent
from streams.events import validate_event
from streams.feedback import Feedback, decode_feedback
from streams.pipeline import Pipeline
from telltale.cli import app
from telltale.wiring import feedback_rows

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def fb(event_id: str, value: int | None = None, **extra: Any) -> Feedback:
    data = {"event_id": event_id, "timestamp": NOW.isoformat(), "user_id": "u1", **extra}
    if value is not None:
        data["value"] = value
    return Feedback.model_validate(data)


def test_rating_maps_to_a_value_and_ids_are_stable() -> None:
    assert fb("e", rating=1).value == -1
    assert fb("e", rating=3).value == 0
    assert fb("e", rating=5).value == 1
    assert fb("e", rating=9, rating_scale=(0, 10)).value == 1
    assert fb("e", -1).feedback_id == fb("e", -1).feedback_id
    assert fb("e", -1).feedback_id != fb("e", -1, user_id="u2").feedback_id
    assert fb("e", 1, feedback_id="mine").feedback_id == "mine"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id": "e", "timestamp": "2026-11-01T00:00:00Z"}', "value (-1/0/1) or rating"),
        (b'{"event_id": "e", "rating": 7, "timestamp": "2026-11-01T00:00:00Z"}', "outside"),
        (b'{"event_id": "e", "value": 2, "timestamp": "2026-11-01T00:00:00Z"}', "value"),
        (b'{"event_id": "e", "value": -1, "timestamp": "2026-11-01T00:00:00"}', "timezone"),
        (b'{"event_id": "", "value": -1, "timestamp": "2026-11-01T00:00:00Z"}', "event_id"),
        (b"[1]", "JSON object"),
        (b"{", "not valid JSON"),
    ],
)
def test_invalid_feedback_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        decode_feedback(raw)


def empty_bank() -> SignalBank:
    return SignalBank([], embedder_id="open_clip/telltale-tiny/none")


def event(event_id: str, version: str = "v1", app_name: str = "shop") -> Any:
    return validate_event({
        "event_id": event_id, "timestamp": (NOW - timedelta(minutes=10)).isoformat(),
        "model": "chat", "model_version": version, "app": app_name,
        "output": {"text": f"answer {event_id}"},
    })  # fmt: skip


def series(ch: Any) -> dict[str, int]:
    rows = ch.query(
        "SELECT event_id, flagged FROM signal_scores FINAL WHERE signal = {s:String}",
        parameters={"s": NEGATIVE_FEEDBACK},
    ).result_rows
    return {str(r[0]): int(r[1]) for r in rows}


def test_feedback_before_and_after_its_event_each_twice(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> None:
    pipeline = Pipeline(tiny_embedder, empty_bank, ClickHouseWriter(ch))
    early, late = fb("early", -1, comment="wrong"), fb("late", 1)
    for _ in range(2):
        record_feedback(ch, feedback_rows([early]))  # before its event: kept, not yet joined
    assert series(ch) == {}
    pipeline.process([event("early"), event("late"), event("silent")])
    assert series(ch) == {"early": 1}  # joined when the event arrived
    for _ in range(2):
        record_feedback(ch, feedback_rows([late]))  # after its event: joined at once
    pipeline.process([event("early"), event("late")])  # redelivered events
    assert series(ch) == {"early": 1, "late": 0}
    assert ch.query("SELECT count() FROM feedback FINAL").result_rows[0][0] == 2
    (rate,) = failure_rates(ch, signal=NEGATIVE_FEEDBACK)
    assert (rate.model, rate.model_version, rate.events, rate.failures) == ("chat", "v1", 2, 1)
    (summary,) = feedback_summary(ch)
    assert (summary.app, summary.rated_events, summary.negative_events) == ("shop", 2, 1)

    # a second negative judgement from another user turns "late" negative
    record_feedback(ch, feedback_rows([fb("late", rating=1, user_id="u2")]))
    assert series(ch) == {"early": 1, "late": 1}
    (rate,) = failure_rates(ch, signal=NEGATIVE_FEEDBACK)
    assert (rate.events, rate.failures) == (2, 2)


def test_replay_of_feedback_records_and_rates_and_suggest(
    tmp_path: Path, tiny_embedder: OpenClipEmbedder, tiny_env: dict[str, str]
) -> None:
    db = tmp_path / "db"
    client = connect(f"chdb://{db}")
    try:
        migrate(client)
        pipeline = Pipeline(tiny_embedder, empty_bank, ClickHouseWriter(client))
        pipeline.process([event(f"e{i}", version="v2" if i >= 5 else "v1") for i in range(10)])
    finally:
        client.close()
    log = tmp_path / "feedback.jsonl"
    lines = [json.dumps({"event_id": f"e{i}", "value": -1 if i in (2, 6, 7) else 1,
                         "comment": "made up" if i == 6 else "",
                         "timestamp": NOW.isoformat(), "user_id": "u"})
             for i in range(10)]  # fmt: skip
    lines += ['{"event_id": "e1", "value": 5, "timestamp": "2026-11-01T00:00:00Z"}', "not json"]
    log.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    dsn = f"chdb://{db}"
    for _ in range(2):  # idempotent
        result = runner.invoke(app, ["replay", str(log), "--feedback", "--clickhouse", dsn,
                                     "--reject-file", str(tmp_path / "rej.jsonl"),
                                     "--format", "json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["read"], summary["stored"], summary["rejected"]) == (12, 10, 2)
    rejects = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert {r["line"] for r in rejects} == {11, 12} and all(r["reason"] for r in rejects)

    result = runner.invoke(app, ["rates", "--signal", NEGATIVE_FEEDBACK, "--clickhouse", dsn,
                                 "--format", "json"])  # fmt: skip
    rates = {r["model_version"]: (r["events"], r["failures"])
             for r in json.loads(result.stdout)["rates"]}  # fmt: skip
    assert rates == {"v1": (5, 1), "v2": (5, 2)}

    result = runner.invoke(app, ["rates", "--feedback", "--clickhouse", dsn, "--format", "json"])
    per_app = [(r["app"], r["model_version"], r["rated_events"], r["negative_events"])
               for r in json.loads(result.stdout)["feedback"]]  # fmt: skip
    assert per_app == [("shop", "v1", 5, 1), ("shop", "v2", 5, 2)]

    result = runner.invoke(app, ["signals", "suggest", "made_up_facts", "--from-feedback",
                                 "--clickhouse", dsn, "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["suggestions"]
    assert {s["event_id"] for s in found} == {"e2", "e6", "e7"}
    assert next(s for s in found if s["event_id"] == "e6")["comments"] == ["made up"]
    assert all(s["content"].startswith("answer ") for s in found)


def test_release_test_fires_on_the_negative_feedback_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 of ``chat`` gets negative feedback on 12% of judged answers instead of 2%: the
    release-spike test finds it on ``feedback.negative`` with no detector code of its own."""
    path = tmp_path / "db"
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        rng = np.random.default_rng(3)
        minute = timedelta(minutes=1)
        for version, start, minutes, rate, seed in (
            ("v1", T0, 240, 0.02, 1), ("v2", T0 + 240 * minute, 90, 0.12, 2),
        ):  # fmt: skip
            traffic(client, model="chat", version=version, start=start, minutes=minutes,
                    per_minute=30, rate=0.0, seed=seed)  # fmt: skip
            records = [
                Feedback(event_id=f"chat-{version}-{seed}-{m}-{i}", user_id="u",
                         value=-1 if rng.random() < rate else 1,
                         timestamp=start + m * minute + timedelta(hours=1))
                for m in range(minutes) for i in range(30) if i % 2 == 0
            ]  # fmt: skip
            record_feedback(client, feedback_rows(records))
    finally:
        client.close()
    # After a full cut-over the baseline is the previous version two hours earlier.
    monkeypatch.setenv("TELLTALE_MONITOR_SPIKE_BASELINE_LAGS_MINUTES", "[120]")
    report = _invoke(f"chdb://{path}", "alerts", "backtest")
    spikes = [d for d in report["detections"] if d["detector"] == "release_spike"]
    assert [(d["model_version"], d["signal"]) for d in spikes] == [("v2", NEGATIVE_FEEDBACK)]


def test_feedback_timestamps_out_of_range_are_reasons() -> None:
    from streams.errors import InvalidEvent
    from streams.feedback import decode_feedback

    for stamp in ("0001-01-01T00:00:00+01:00", "1999-12-31T23:59:59Z"):
        with pytest.raises(InvalidEvent):
            decode_feedback(b'{"event_id": "e", "value": -1, "timestamp": "%s"}' % stamp.encode())
