"""``telltale replay``: logs → (Kafka or the in-process pipeline) → ClickHouse."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from streams.emitter import Emitter
from streams.replay import RejectWriter, ReplayStats, batched, chain_logs, paced
from telltale.settings import Settings
from telltale.wiring import make_client, make_pipeline

__all__ = ["replay_files"]


def replay_files(
    settings: Settings,
    files: Sequence[Path],
    *,
    to_kafka: bool = False,
    speed: str = "max",
    reject_file: Path,
    batch_size: int = 256,
) -> dict[str, Any]:
    pace = None if speed == "max" else float(speed)
    stats = ReplayStats()
    rejects = RejectWriter(reject_file)
    events = paced(chain_logs(files, rejects, stats), pace)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} events"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("replaying", total=None)
            if to_kafka:
                with Emitter(settings.kafka.bootstrap, settings.kafka.topic) as emitter:
                    for event in events:
                        emitter.emit(event)
                        stats.written += 1
                        progress.advance(task)
            else:
                client = make_client(settings.clickhouse)
                try:
                    pipeline = make_pipeline(settings, client)
                    for batch in batched(events, batch_size):
                        result = pipeline.process(batch)
                        stats.written += result.written
                        stats.skipped_existing += result.skipped_existing
                        for event, reason in result.rejected:
                            stats.rejected += 1
                            rejects.reject("pipeline", 0, reason, event.model_dump_json())
                        progress.advance(task, len(batch))
                finally:
                    client.close()
    finally:
        rejects.close()
    return {
        "read": stats.read, "rejected": stats.rejected,
        "sent_to_kafka" if to_kafka else "written": stats.written,
        "skipped_existing": stats.skipped_existing, "reject_file": str(reject_file),
    }  # fmt: skip
