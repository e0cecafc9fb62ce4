"""Seed data for the dashboard, alert-rule and report tests: every table a panel reads.

Two models over five hours before ``now``: ``chat-assistant`` (app ``chat``) released
``2026.11`` two hours ago and its ``stock_advice`` failure rate jumped from 5% to 20%;
``image-gen`` (app ``studio``) runs ``v3`` throughout with ``stock_watermark`` at 10%.
Detections (one open per detector, one resolved), drift windows with cluster shares and
releases complete the picture. Score rows carry slice values (``app`` and ``locale``), the group
``safety-critical`` (both signals) has its own rows, and one ``telltale discover`` run left
clusters. Everything goes through the real writer and tables.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.audits import ErrorEstimateRow, record_error_estimates
from storage.discovery import ClusterRow, save_clusters
from storage.feedback import FeedbackRow
from storage.groups import GroupRow, save_group_rows
from storage.registry import SignalRecord, save_signal
from storage.releases import add_release
from storage.rows import CacheStatsRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

SIGNALS = {"stock_advice": 0.6, "stock_watermark": 0.5}
GROUP = "safety-critical"
LOCALES = ("de", "en", "fr")
CHAT, IMAGE = "chat-assistant", "image-gen"
OLD, NEW = "2026.10", "2026.11"


def now_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


def seed(client: Any, now: datetime) -> None:
    """Write the scenario ending at ``now`` (timezone-aware)."""
    release_at = now - timedelta(hours=2)
    batch = WriteBatch()
    for i in range(150):
        at = now - timedelta(hours=5) + timedelta(minutes=2 * i) + timedelta(seconds=7)
        version = NEW if at >= release_at else OLD
        chat_flag = i % 5 == 0 if version == NEW else i % 20 == 0
        _add(batch, f"c{i}", at, CHAT, version, "chat", "stock_advice", chat_flag, i)
        _add(batch, f"m{i}", at, IMAGE, "v3", "studio", "stock_watermark", i % 10 == 0, i)
        # one pipeline batch of 20 prompts per event pair: 12 answered by the cache
        batch.cache_stats.append(
            CacheStatsRow(at, "prompt.text", "st/all-MiniLM-L6-v2/x/w256s192", 20, 8, 2, 2, 8)
        )
    ClickHouseWriter(client).write(batch)
    # Delayed user feedback on every third event: negative where the signal flagged it.
    # Inserted into the table only (not joined into the feedback.negative series), so the
    # other panels' and rules' scenario stays as it was.
    flagged = {s.event_id: s.flagged for s in batch.scores}
    rows = [
        FeedbackRow(f"fb-{e.event_id}", e.event_id, -1 if flagged[e.event_id] else 1, None,
                    "thumbs", "u1", e.timestamp + timedelta(minutes=3)).values()
        for e in batch.events if int(e.event_id[1:]) % 3 == 0
    ]  # fmt: skip
    client.insert("feedback", rows, column_names=list(FeedbackRow.COLUMNS))

    for name, threshold in SIGNALS.items():
        save_signal(
            client,
            SignalRecord(
                name=name,
                version=1,
                kind="few_shot",
                embedder_id="open_clip/telltale-tiny/none",
                definition="{}",
                fitted=json.dumps({"threshold": threshold}),
                author="test",
                created_at=now - timedelta(days=1),
            ),
        )
    add_release(client, CHAT, OLD, now - timedelta(days=3), note="previous")
    add_release(client, CHAT, NEW, release_at, note="new prompt template")
    add_release(client, IMAGE, "v3", now - timedelta(hours=5))
    _detections(client, now, release_at)
    _drift_windows(client, now)
    _dead_letters(client, now)
    _signal_errors(client, now)
    save_group_rows(client, [GroupRow(GROUP, tuple(sorted(SIGNALS)), "critical")])
    save_clusters(client, [
        ClusterRow(
            cluster_id=f"{model}-c{rank}", run_at=now, model=model, field="output.text",
            embedder_id="open_clip/telltale-tiny/none", rank=rank, size=40 // rank,
            recent_share=0.03 / rank, reference_share=0.0, growth=3.0 / rank,
            distance=2.0 / rank, score=1.0 / rank, examples=("c1", "c2"),
            example_texts=('{"tool": "web_search"}', '{"tool": "calculator"}'),
            positives=("c1", "c2"), negatives=("c3",),
            signal_scores={"stock_advice": {"mean_score": 0.1, "flagged_share": 0.0,
                                            "events": 40}},
            window_start=now - timedelta(hours=24), window_end=now,
        )
        for rank in (1, 2)
        for model in (CHAT, IMAGE)
    ])  # fmt: skip


def _signal_errors(client: Any, now: datetime) -> None:
    """Two audits' estimates: stock_advice pooled and per version (its precision fell on the
    new release), stock_watermark pooled only."""
    rows = []
    for minutes, new_precision in ((90, (0.8, 0.6, 0.9)), (30, (0.5, 0.35, 0.65))):
        at = now - timedelta(minutes=minutes)
        for version, precision in (("", (0.7, 0.55, 0.8)), (OLD, (0.85, 0.7, 0.95)),
                                   (NEW, new_precision)):  # fmt: skip
            rows.append(ErrorEstimateRow("stock_advice", 1, version, 120, (0.8, 0.6, 0.92),
                                         (0.95, 0.92, 0.97), precision, at))  # fmt: skip
        rows.append(ErrorEstimateRow("stock_watermark", 1, "", 80, (0.7, 0.5, 0.85),
                                     (0.9, 0.85, 0.94), (0.45, 0.3, 0.6), at))  # fmt: skip
    record_error_estimates(client, rows)


def _dead_letters(client: Any, now: datetime) -> None:
    """40 refused payloads in the last 10 minutes: 40 of 340 payloads, over the 5 % alert."""
    rows = [
        [
            "generations",
            i % 3,
            1000 + i,
            "payload is not valid JSON",
            20,
            now - timedelta(minutes=10) + timedelta(seconds=15 * i),
        ]
        for i in range(40)
    ]
    client.insert(
        "dead_letters",
        rows,
        column_names=["topic", "partition", "offset", "reason", "payload_bytes", "failed_at"],
    )


def _add(
    batch: WriteBatch,
    event_id: str,
    at: datetime,
    model: str,
    version: str,
    app: str,
    signal: str,
    flagged: bool,
    i: int,
) -> None:
    image = ""
    if model == IMAGE:
        image = f"https://images.example/{event_id}.png" if i % 7 else "data:image/png;base64,AAAA"
    batch.events.append(
        EventRow(
            event_id=event_id,
            timestamp=at,
            model=model,
            model_version=version,
            app=app,
            prompt_text=f"prompt {i}: which stocks <b>should</b> I buy?",
            output_text=f"answer {i}" if model == CHAT else "",
            output_image=image,
            latency_ms=100.0 + (i % 13) * 25.0,
            feedback=-1 if i % 11 == 0 else None,
            input_tokens=None if i % 10 == 9 else 200 + i % 17,  # some report no usage
            output_tokens=(60 + i % 9 if model == CHAT else None) if i % 10 != 9 else None,
        )
    )
    score = 0.9 - (i % 7) * 0.02 if flagged else (i % 9) * 0.05
    slices = {"app": app, "locale": LOCALES[i % 3]}
    batch.scores.append(ScoreRow(event_id, signal, 1, at, model, version, score, flagged, slices))
    batch.scores.append(ScoreRow(event_id, GROUP, 7, at, model, version, score, flagged, slices))


def _detections(client: Any, now: datetime, release_at: datetime) -> None:
    columns = [
        "detection_id",
        "detector",
        "key",
        "model",
        "model_version",
        "signal",
        "state",
        "opened_at",
        "resolved_at",
        "statistic",
        "threshold",
        "p_value",
        "e_value",
        "effect",
        "effect_low",
        "effect_high",
        "details",
        "notified",
    ]
    opened = release_at + timedelta(minutes=40)
    rows = [
        [
            "d1",
            "release_spike",
            f"model={CHAT}/signal=stock_advice",
            CHAT,
            NEW,
            "stock_advice",
            "open",
            opened,
            None,
            140.0,
            100.0,
            None,
            140.0,
            0.15,
            0.08,
            0.22,
            "{}",
            "sent",
        ],
        [
            "d2",
            "degradation",
            f"model={IMAGE}/v3/signal=stock_watermark",
            IMAGE,
            "v3",
            "stock_watermark",
            "open",
            now - timedelta(minutes=30),
            None,
            9.1,
            7.5,
            None,
            None,
            0.04,
            None,
            None,
            "{}",
            "sent",
        ],
        [
            "d3",
            "prompt_drift",
            f"model={CHAT}",
            CHAT,
            "",
            "",
            "open",
            now - timedelta(minutes=20),
            None,
            0.0004,
            0.0025,
            0.0004,
            None,
            0.21,
            None,
            None,
            "{}",
            "sent",
        ],
        [
            "d4",
            "degradation",
            f"model={CHAT}/{OLD}/signal=stock_advice",
            CHAT,
            OLD,
            "stock_advice",
            "resolved",
            now - timedelta(hours=4),
            now - timedelta(hours=3),
            8.0,
            7.5,
            None,
            None,
            0.02,
            None,
            None,
            "{}",
            "resolved",
        ],
    ]
    client.insert("detections", rows, column_names=columns)


def _drift_windows(client: Any, now: datetime) -> None:
    rows = []
    for w in range(10):
        end = now - timedelta(hours=5) + timedelta(minutes=30 * (w + 1))
        shift = 0.05 * w
        clusters = [
            {"cluster": 0, "reference_share": 0.5, "recent_share": 0.5 - shift},
            {"cluster": 1, "reference_share": 0.4, "recent_share": 0.4},
            {"cluster": 2, "reference_share": 0.1, "recent_share": 0.1 + shift},
        ]
        rows.append(
            [
                CHAT,
                end - timedelta(minutes=30),
                end,
                0.5 / (w + 1),
                0.0025,
                0.5 / (w + 1),
                500,
                200,
                json.dumps(clusters),
            ]
        )
    client.insert(
        "drift_windows",
        rows,
        column_names=[
            "model",
            "window_start",
            "window_end",
            "statistic",
            "threshold",
            "p_value",
            "reference_size",
            "recent_size",
            "clusters",
        ],
    )
