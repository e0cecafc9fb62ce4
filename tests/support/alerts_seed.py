"""Seed data for the monitor, notifier and backtest tests: per-minute traffic with planted
failure rates (and optionally prompt embeddings), written through the real writer and tables."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from storage.rows import EmbeddingRow, EventRow, ScoreRow, WriteBatch
from storage.writer import ClickHouseWriter

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EMBEDDER = "open_clip/test/random"


def traffic(
    client: Any,
    *,
    model: str,
    version: str,
    start: datetime,
    minutes: int,
    per_minute: int,
    rate: float,
    seed: int,
    signal: str = "stock_advice",
) -> int:
    """``per_minute`` events a minute for ``minutes`` from ``start``, each failing with ``rate``."""
    rng = np.random.default_rng(seed)
    batch = WriteBatch()
    for m in range(minutes):
        for i in range(per_minute):
            at = start + timedelta(minutes=m, seconds=(i * 59) // per_minute)
            eid = f"{model}-{version}-{seed}-{m}-{i}"
            flagged = bool(rng.random() < rate)
            batch.events.append(EventRow(eid, at, model, version, app="chat", prompt_text="hi"))
            batch.scores.append(
                ScoreRow(eid, signal, 1, at, model, version, 0.9 * flagged, flagged)
            )
    return ClickHouseWriter(client).write(batch)


def prompts(
    client: Any,
    *,
    model: str,
    start: datetime,
    minutes: int,
    per_minute: int,
    topics: np.ndarray[Any, Any],
    mix: list[float],
    seed: int,
    dim: int = 16,
) -> None:
    """Prompt events with embeddings drawn around topic centres with the given mix."""
    rng = np.random.default_rng(seed)
    batch = WriteBatch()
    for m in range(minutes):
        for i in range(per_minute):
            at = start + timedelta(minutes=m, seconds=(i * 59) // per_minute)
            topic = int(rng.choice(len(mix), p=mix))
            vector = topics[topic] + rng.normal(0.0, 0.3, dim)
            eid = f"p-{model}-{seed}-{m}-{i}"
            text = f"topic {topic} question {m}.{i}"
            batch.events.append(EventRow(eid, at, model, "v1", prompt_text=text))
            batch.embeddings.append(
                EmbeddingRow(eid, "prompt.text", EMBEDDER, at, model, "v1", vector.tolist())
            )
    ClickHouseWriter(client).write(batch)


@dataclass
class Hook:
    """A local webhook receiver: records every request, answers from a script of statuses."""

    port: int = 0
    statuses: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return list(self.requests)


@contextmanager
def webhook_server() -> Iterator[Hook]:
    """Start a receiver on 127.0.0.1 (an ephemeral port) and stop it afterwards."""
    hook = Hook()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                status = hook.statuses.pop(0) if hook.statuses else 200
                hook.paths.append(self.path)
                hook.requests.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
