"""Read production logs (JSONL, plain or gzip) as generation events, streaming and bounded.

Invalid lines are written to a reject file with their file, line number and reason; they are
never dropped silently. Each event keeps its own timestamp.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from streams.errors import InvalidEvent
from streams.events import GenerationEvent, decode_event

__all__ = ["RejectWriter", "ReplayStats", "batched", "chain_logs", "paced", "read_log"]


@dataclass
class ReplayStats:
    read: int = 0
    rejected: int = 0
    written: int = 0
    skipped_existing: int = 0


class RejectWriter:
    """Appends one JSON line per rejected input line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self.count = 0

    def reject(self, source: str, line: int, reason: str, raw: str) -> None:
        if self._handle is None:
            self._handle = self.path.open("a", encoding="utf-8")
        record = {"file": source, "line": line, "reason": reason, "raw": raw[:10_000]}
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return path.open("rb")


def read_log(path: Path, rejects: RejectWriter, stats: ReplayStats) -> Iterator[GenerationEvent]:
    """Yield the valid events of one JSONL log, rejecting the rest with their line numbers."""
    with _open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            stats.read += 1
            try:
                yield decode_event(raw.rstrip(b"\r\n"))
            except InvalidEvent as exc:
                stats.rejected += 1
                rejects.reject(str(path), number, exc.reason, raw.decode("utf-8", "replace"))


def batched(events: Iterable[GenerationEvent], size: int) -> Iterator[list[GenerationEvent]]:
    batch: list[GenerationEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def paced(
    events: Iterable[GenerationEvent],
    speed: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[GenerationEvent]:
    """Yield events no faster than ``speed`` × the pace of their timestamps (None: no pacing)."""
    first_event: datetime | None = None
    started = time.monotonic()
    for event in events:
        if speed:
            if first_event is None:
                first_event = event.timestamp
            due = (event.timestamp - first_event).total_seconds() / speed
            wait = due - (time.monotonic() - started)
            if wait > 0:
                sleep(wait)
        yield event


def chain_logs(
    paths: Sequence[Path], rejects: RejectWriter, stats: ReplayStats
) -> Iterator[GenerationEvent]:
    for path in paths:
        yield from read_log(path, rejects, stats)
