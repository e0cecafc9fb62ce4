"""``telltale replay``: logs → (the in-process pipeline, or Kafka) → ClickHouse."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from streams import (
    Ahead,
    Checkpoint,
    Emitter,
    GenerationEvent,
    Pipeline,
    RejectWriter,
    Replayer,
    ReplayStats,
    Vectors,
)
from telltale.settings import Settings
from telltale.wiring import free_text_policy, kafka_security, make_client, make_parts

__all__ = ["replay_feedback", "replay_files"]


def replay_files(
    settings: Settings,
    files: Sequence[Path],
    *,
    to_kafka: bool = False,
    speed: str = "max",
    reject_file: Path,
    checkpoint_file: Path | None = None,
    mapping: dict[str, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 256,
    console: Console | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Replay ``files``; return a summary. Safe to interrupt and run again."""
    pace = None if speed == "max" else float(speed)
    rejects = RejectWriter(reject_file, free_text_policy(settings))
    checkpoint = Checkpoint(checkpoint_file) if checkpoint_file else None
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[events]} events"),
        TextColumn("{task.fields[rate]:.0f}/s"), TimeRemainingColumn(),
    )  # fmt: skip
    progress = Progress(*columns, console=console, transient=True, disable=not show_progress)
    task = progress.add_task("replay", total=float(len(files)), events=0, rate=0.0)
    done_files: list[str] = []

    def on_progress(source: str, fraction: float, stats: ReplayStats) -> None:
        if fraction >= 1.0 and source not in done_files:
            done_files.append(source)
        elapsed = max(time.monotonic() - started, 1e-9)
        handled = stats.written + stats.skipped_existing
        progress.update(task, completed=len(done_files) + (0 if fraction >= 1.0 else fraction),
                        description=Path(source).name, events=handled,
                        rate=handled / elapsed)  # fmt: skip

    client = None
    exported: dict[str, int] = {}
    try:
        with progress:
            if to_kafka:
                with Emitter(settings.kafka.bootstrap, settings.kafka.topic,
                             feedback_topic=settings.kafka.feedback_topic,
                             security=kafka_security(settings.kafka)) as emitter:  # fmt: skip

                    def send(
                        batch: list[GenerationEvent], _: Vectors
                    ) -> tuple[int, int, list[tuple[str, str]]]:
                        for event in batch:
                            emitter.emit(event)
                        emitter.flush()  # delivered before the checkpoint moves on
                        return len(batch), 0, []

                    stats = _run(send, None, rejects, checkpoint, mapping, since, until, pace,
                                 batch_size, settings, on_progress, files)  # fmt: skip
            else:
                client = make_client(settings.clickhouse)
                # the next batch's texts are embedded while this one is stored (not paced)
                parts = make_parts(
                    settings, client, embed_ahead=settings.worker.embed_ahead and not pace
                )
                parts.signals.retrain_stale()  # as make_pipeline; the exporter is kept to close
                pipeline, exporter = parts.pipeline, parts.exporter
                embedder_id = pipeline.embedder_id
                ahead = pipeline.ahead

                def store(
                    batch: list[GenerationEvent], vectors: Vectors
                ) -> tuple[int, int, list[tuple[str, str]]]:
                    result = pipeline.process(batch, vectors)
                    rejected = [(e.event_id, reason) for e, reason in result.rejected]
                    return result.written, result.skipped_existing, rejected

                try:
                    stats = _run(store, embedder_id, rejects, checkpoint, mapping, since, until,
                                 pace, batch_size, settings, on_progress, files,
                                 columnar=pipeline,
                                 ahead=pipeline.embed_ahead if ahead else None)  # fmt: skip
                finally:
                    if ahead is not None:  # jobs not started are dropped (an interrupted replay)
                        ahead.close()
                    if exporter is not None:  # what is queued is sent before the summary
                        exporter.close()
                        exported = {"exported": exporter.sent, "export_dropped": exporter.dropped}
    finally:
        rejects.close()
        if client is not None:
            client.close()
    elapsed = time.monotonic() - started
    return {
        "read": stats.read, "rejected": stats.rejected, "filtered_out": stats.filtered_out,
        "sent_to_kafka" if to_kafka else "written": stats.written,
        "skipped_existing": stats.skipped_existing, "pre_embedded": stats.pre_embedded,
        "resumed_after": stats.resumed_after, "seconds": round(elapsed, 3),
        "events_per_s": round((stats.written + stats.skipped_existing) / max(elapsed, 1e-9), 1),
        "reject_file": str(reject_file), **exported,
    }  # fmt: skip


def _run(
    sink: Any, embedder_id: str | None, rejects: RejectWriter, checkpoint: Checkpoint | None,
    mapping: dict[str, str] | None, since: datetime | None, until: datetime | None,
    pace: float | None, batch_size: int, settings: Settings, on_progress: Any,
    files: Sequence[Path], columnar: Pipeline | None = None, ahead: Ahead | None = None,
) -> ReplayStats:  # fmt: skip
    replayer = Replayer(
        sink, rejects, embedder_id=embedder_id, checkpoint=checkpoint, mapping=mapping,
        since=since, until=until, speed=pace, batch_size=batch_size,
        max_payload_bytes=settings.worker.max_payload_bytes, on_progress=on_progress,
        columnar=columnar, ahead=ahead,
    )  # fmt: skip
    return replayer.replay(files)


def replay_feedback(
    settings: Settings,
    files: Sequence[Path],
    *,
    to_kafka: bool = False,
    reject_file: Path,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Replay logged feedback records (JSONL or Parquet): into ClickHouse, or with
    ``to_kafka`` onto the feedback topic. Idempotent: a record's feedback id makes a second
    replay store nothing new. Invalid records go to ``reject_file`` with the reason."""
    from storage import record_feedback
    from streams import Feedback, InvalidEvent, read_records, validate_feedback
    from telltale.wiring import feedback_rows, pseudonyms

    started = time.monotonic()
    rejects = RejectWriter(reject_file, free_text_policy(settings))
    counts = {"read": 0, "rejected": 0, "sent_to_kafka" if to_kafka else "stored": 0}
    emitter: Emitter | None = None
    client: Any = None
    pending: list[Feedback] = []

    def flush() -> None:
        if not pending:
            return
        if emitter is not None:
            for record in pending:
                emitter.feedback(record)
            emitter.flush()
            counts["sent_to_kafka"] += len(pending)
        elif client is not None:
            rows = feedback_rows(pending, pseudonyms(settings), free_text_policy(settings))
            counts["stored"] += record_feedback(client, rows)
        pending.clear()

    try:
        if to_kafka:
            emitter = Emitter(settings.kafka.bootstrap, settings.kafka.topic,
                              feedback_topic=settings.kafka.feedback_topic,
                              security=kafka_security(settings.kafka))  # fmt: skip
        else:
            client = make_client(settings.clickhouse)
        for path in files:
            for record in read_records(path):
                counts["read"] += 1
                try:
                    if record.data is None:
                        raise InvalidEvent(record.error or "unreadable record")
                    pending.append(validate_feedback(record.data))
                except InvalidEvent as exc:
                    counts["rejected"] += 1
                    rejects.reject(record.source, record.position, exc.reason, record.raw)
                if len(pending) >= batch_size:
                    flush()
        flush()
    finally:
        rejects.close()
        if emitter is not None:
            emitter.close()
        if client is not None:
            client.close()
    return {**counts, "seconds": round(time.monotonic() - started, 3),
            "reject_file": str(reject_file)}  # fmt: skip
