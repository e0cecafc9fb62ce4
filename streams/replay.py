"""Historical replay: production logs through the same pipeline, safely.

Reads JSONL (plain or gzip) and Parquet, streaming (memory stays bounded whatever the file
size), and hands batches of validated events to a *sink*: the in-process pipeline or the
Emitter. Each event keeps its own timestamp.

* invalid records go to a reject file with file, line (or row) number and reason;
* ``mapping`` renames fields of logs that do not follow the event contract;
* ``since``/``until`` keep only events in a time range;
* a checkpoint file records, per input file, how many records are done, written after each
  batch has been stored: an interrupted replay resumes there (and, because writes are
  idempotent on ``event_id``, a replay without a checkpoint inserts nothing twice either);
* records that carry ``embeddings`` computed by the same embedder skip the model
  (``{"embeddings": {"embedder_id": "...", "output.text": [...], ...}}``);
* with a ``columnar`` sink, Parquet logs take the fast path of :mod:`streams.columnar`:
  rows proven valid and fully pre-embedded are converted and stored column-wise, one Arrow
  record batch (``batch_size`` rows) at a time; every other row takes the per-event path;
* with an ``ahead`` hook (and no pacing), each batch read is handed to the hook first (the
  in-process replay queues its texts for the model, :mod:`signals.ahead`) and stored once
  the next batch has been read and handed over, so the model embeds batch k+1 while batch k
  is scored and written. The last batch of a file is stored before the next file is opened;
  the checkpoint and progress only ever name batches the sink has stored.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from streams._json import MAX_JSON_DEPTH, check_depth, parse_json
from streams.columnar import ColumnarSink, split_batch
from streams.errors import InvalidEvent, JsonTooDeep
from streams.events import GenerationEvent, validate_event

__all__ = [
    "Ahead",
    "Checkpoint",
    "LogRecord",
    "RejectWriter",
    "ReplayStats",
    "Replayer",
    "Sink",
    "apply_mapping",
    "parse_mapping",
    "read_records",
]

Vector = dict[str, list[float]]  # embedding field -> vector
Vectors = dict[str, Vector]  # event id -> its carried vectors
Sink = Callable[[list[GenerationEvent], Vectors], tuple[int, int, list[tuple[str, str]]]]
"""Stores a batch; returns (written, skipped as already stored, [(event_id, reason)] rejected)."""
Ahead = Callable[[list[GenerationEvent], Vectors], object]
"""Told of a batch before the sink is called with it (best effort: what it raises is logged)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogRecord:
    source: str
    position: int  # 1-based line number (JSONL) or row number (Parquet)
    data: dict[str, Any] | None  # None when the record could not be parsed
    raw: str
    error: str = ""
    progress: float = 0.0  # fraction of the file read so far


@dataclass
class ReplayStats:
    read: int = 0
    rejected: int = 0
    written: int = 0
    skipped_existing: int = 0
    filtered_out: int = 0
    resumed_after: int = 0
    pre_embedded: int = 0


class RejectWriter:
    """Appends one JSON line per rejected record: file, line, reason and the raw input
    (as ``redact`` stores it, when a content policy other than raw is set)."""

    def __init__(self, path: Path, redact: Callable[[str], str] | None = None) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self._redact = redact
        self.count = 0

    def reject(self, source: str, line: int, reason: str, raw: str) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        raw = raw[:10_000]
        record = {"file": source, "line": line, "reason": reason,
                  "raw": self._redact(raw) if self._redact is not None else raw}  # fmt: skip
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class Checkpoint:
    """Per input file: how many records are done. Written atomically after each batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._state = json.loads(path.read_text(encoding="utf-8"))

    @staticmethod
    def _key(source: Path) -> tuple[str, dict[str, Any]]:
        stat = source.stat()
        return str(source.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def done(self, source: Path) -> int:
        key, identity = self._key(source)
        entry = self._state.get(key)
        if entry is None or entry.get("identity") != identity:
            return 0  # new or changed file: start from the top
        return int(entry.get("done", 0))

    def advance(self, source: Path, done: int) -> None:
        key, identity = self._key(source)
        self._state[key] = {"identity": identity, "done": done}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self._state, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """``["timestamp=ts", "output.text=response.content"]`` → contract field ← source path."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise ValueError(f"mapping {pair!r} is not FIELD=SOURCE_PATH")
        mapping[target.strip()] = source.strip()
    return mapping


def apply_mapping(data: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``data`` with each mapped source path moved to its contract field."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=str)) if mapping else dict(data)
    for target, source in mapping.items():
        found, value = _pop_path(out, source.split("."))
        if found:
            _set_path(out, target.split("."), value)
    return out


def _pop_path(data: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    if not isinstance(node, dict) or path[-1] not in node:
        return False, None
    return True, node.pop(path[-1])


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def read_records(path: Path) -> Iterator[LogRecord]:
    """Records of one log file, streaming: JSONL (plain or gzip) or Parquet (by suffix)."""
    if path.suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        yield from _read_jsonl(path)


def _read_jsonl(path: Path) -> Iterator[LogRecord]:
    size = max(path.stat().st_size, 1)
    with path.open("rb") as raw_file:
        gzipped = raw_file.read(2) == b"\x1f\x8b"
        raw_file.seek(0)
        handle: IO[bytes] = gzip.GzipFile(fileobj=raw_file) if gzipped else raw_file  # type: ignore[assignment]
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            progress = raw_file.tell() / size
            try:
                data = parse_json(line, finite=True)
            except JsonTooDeep as exc:
                yield LogRecord(str(path), number, None, text, exc.reason, progress)
                continue
            except ValueError as exc:
                yield LogRecord(str(path), number, None, text, f"not valid JSON: {exc}", progress)
                continue
            if not isinstance(data, dict):
                yield LogRecord(str(path), number, None, text, "not a JSON object", progress)
                continue
            yield LogRecord(str(path), number, data, text, "", progress)


def _read_parquet(path: Path) -> Iterator[LogRecord]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    total = max(parquet.metadata.num_rows, 1)
    number = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            try:
                data = _row(row)
            except JsonTooDeep as exc:
                yield LogRecord(str(path), number, None, "", exc.reason, number / total)
                continue
            yield LogRecord(str(path), number, data, "", "", number / total)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as a JSON-like mapping; nested columns deeper than
    :data:`~streams._json.MAX_JSON_DEPTH` raise :class:`~streams.errors.JsonTooDeep` before
    :func:`_plain` recurses into them."""
    check_depth(row, MAX_JSON_DEPTH)
    return {k: _plain(v) for k, v in row.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):  # an Arrow map: (key, value) pairs
            return {k: _plain(v) for k, v in value if v is not None}
        if value and not isinstance(value[0], dict | list | datetime):
            return value  # a vector or a list of scalars: nothing to convert
        return [_plain(v) for v in value]
    return value


@dataclass
class _Pending:
    events: list[GenerationEvent] = field(default_factory=list)
    vectors: Vectors = field(default_factory=dict)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    last_position: int = 0


_Held = tuple[_Pending, float]  # a batch read and handed ahead, not yet stored; its progress


class Replayer:
    """Drives records from files into a sink in batches, with rejects and a checkpoint."""

    def __init__(
        self,
        sink: Sink,
        rejects: RejectWriter,
        *,
        embedder_id: str | None = None,
        checkpoint: Checkpoint | None = None,
        mapping: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        speed: float | None = None,
        batch_size: int = 256,
        max_payload_bytes: int | None = None,
        on_progress: Callable[[str, float, ReplayStats], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        columnar: ColumnarSink | None = None,
        ahead: Ahead | None = None,
    ) -> None:
        self._sink = sink
        self._ahead = None if speed else ahead  # pacing stores each batch as soon as it is read
        self._columnar = columnar
        self._rejects = rejects
        self._embedder_id = embedder_id
        self._checkpoint = checkpoint
        self._mapping = dict(mapping or {})
        self._since, self._until = since, until
        self._speed = speed
        self._batch_size = batch_size
        self._max_payload_bytes = max_payload_bytes
        self._on_progress = on_progress
        self._sleep = sleep
        self.stats = ReplayStats()
        self._first_event: datetime | None = None
        self._started = time.monotonic()

    def replay(self, paths: Sequence[Path]) -> ReplayStats:
        for path in paths:
            self._replay_file(path)
        return self.stats

    def _replay_file(self, path: Path) -> None:
        skip = self._checkpoint.done(path) if self._checkpoint else 0
        self.stats.resumed_after += skip
        columnar = self._columnar
        if (
            columnar is not None
            and path.suffix == ".parquet"
            and not (self._mapping or self._speed)
        ):
            self._replay_parquet_columns(path, skip, columnar)
            return
        pending = _Pending()
        held: _Held | None = None
        progress = 0.0
        for record in read_records(path):
            progress = record.progress
            if record.position <= skip:
                continue
            self._take(record, pending)
            if len(pending.events) >= self._batch_size:
                held = self._hand_over(path, pending, progress, held)
                pending = _Pending()
        held = self._hand_over(path, pending, 1.0, held)
        if held is not None:  # the file's last batch, stored before the next file is read
            self._flush(path, *held)

    def _hand_over(
        self, path: Path, pending: _Pending, progress: float, held: _Held | None
    ) -> _Held | None:
        """Store ``pending``, or with an ``ahead`` hook: hand it to the hook, store the batch
        ``held`` back before it (the model embeds this one meanwhile) and return this one,
        still to be stored."""
        if self._ahead is None:
            self._flush(path, pending, progress)
            return None
        if pending.events:
            try:
                self._ahead(pending.events, pending.vectors)
            except Exception:  # the sink embeds the batch's texts itself
                log.warning("embedding a batch ahead failed; it is embedded when stored",
                            exc_info=True)  # fmt: skip
        if held is not None:
            self._flush(path, *held)
        return pending, progress

    def _take(self, record: LogRecord, pending: _Pending) -> None:
        """Parse one record into ``pending``: an event (with carried vectors) or a reject."""
        self.stats.read += 1
        pending.last_position = max(pending.last_position, record.position)
        event, reason, vectors = self._parse(record)
        if event is None:
            pending.rejects.append((record.position, reason, record.raw))
        elif self._in_range(event):
            self._pace(event)
            pending.events.append(event)
            if vectors:
                pending.vectors[event.event_id] = vectors
        else:
            self.stats.filtered_out += 1

    def _replay_parquet_columns(self, path: Path, skip: int, sink: ColumnarSink) -> None:
        """One Arrow record batch at a time: valid pre-embedded rows column-wise, the rest as
        events; the checkpoint moves once both parts of a batch are stored."""
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        total = max(parquet.metadata.num_rows, 1)
        first = 0  # 0-based row number of the batch's first row
        for batch in parquet.iter_batches(batch_size=self._batch_size):
            start, first = first, first + batch.num_rows
            if first <= skip:
                continue
            if start < skip:
                batch = batch.slice(skip - start)
                start = skip
            columns, slow, filtered = split_batch(
                batch, sink.embedder_id, sink.dim, since=self._since, until=self._until
            )
            self.stats.filtered_out += filtered
            self.stats.read += batch.num_rows - len(slow)
            if columns is not None:
                written, skipped = sink.process_columns(columns)
                self.stats.written += written
                self.stats.skipped_existing += skipped
                self.stats.pre_embedded += len(columns)
            pending = _Pending(last_position=first)
            if slow:
                rows = batch.take(slow).to_pylist()
                for index, row in zip(slow, rows, strict=True):
                    position = start + index + 1
                    try:
                        record = LogRecord(str(path), position, _row(row), "")
                    except JsonTooDeep as exc:
                        record = LogRecord(str(path), position, None, "", exc.reason)
                    self._take(record, pending)
            self._flush(path, pending, first / total)

    def _parse(self, record: LogRecord) -> tuple[GenerationEvent | None, str, Vector]:
        if record.data is None:
            return None, record.error, {}
        limit = self._max_payload_bytes
        if limit is not None and len(record.raw.encode()) > limit:
            return None, f"record of {len(record.raw.encode())} bytes exceeds {limit}", {}
        data = apply_mapping(record.data, self._mapping)
        carried = data.pop("embeddings", None)
        try:
            event = validate_event(data)
        except InvalidEvent as exc:
            return None, exc.reason, {}
        vectors: Vector = {}
        same_embedder = (
            self._embedder_id is not None
            and isinstance(carried, dict)
            and (carried.get("embedder_id") == self._embedder_id)
        )
        if same_embedder and isinstance(carried, dict):
            vectors = {k: v for k, v in carried.items() if k != "embedder_id" and
                       isinstance(v, list)}  # fmt: skip
        return event, "", vectors

    def _in_range(self, event: GenerationEvent) -> bool:
        if self._since is not None and event.timestamp < self._since:
            return False
        return not (self._until is not None and event.timestamp >= self._until)

    def _pace(self, event: GenerationEvent) -> None:
        if not self._speed:
            return
        if self._first_event is None:
            self._first_event, self._started = event.timestamp, time.monotonic()
        due = (event.timestamp - self._first_event).total_seconds() / self._speed
        wait = due - (time.monotonic() - self._started)
        if wait > 0:
            self._sleep(wait)

    def _flush(self, path: Path, pending: _Pending, progress: float) -> None:
        if pending.events:
            written, skipped, rejected = self._sink(pending.events, pending.vectors)
            self.stats.written += written
            self.stats.skipped_existing += skipped
            self.stats.pre_embedded += len(pending.vectors)
            by_id = {e.event_id: e for e in pending.events}
            for event_id, reason in rejected:
                pending.rejects.append((0, reason, by_id[event_id].model_dump_json()))
        # rejects are written with their batch, so a resumed replay never repeats one
        for position, reason, raw in pending.rejects:
            self._rejects.reject(str(path), position, reason, raw)
            self.stats.rejected += 1
        if self._checkpoint is not None and pending.last_position:
            self._checkpoint.advance(path, pending.last_position)
        if self._on_progress is not None:
            self._on_progress(str(path), progress, self.stats)
