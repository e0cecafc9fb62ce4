"""Hostile input that is *valid*: strings built to break SQL, logs or terminals, and image
references built to make the worker reach where it should not.

* model names, signal names and attributes with quotes, SQL fragments, control characters and
  very long values go through the Pipeline into chDB and come back verbatim through
  ``storage.queries.failure_rates`` and a SELECT of ``events.attributes``, because every value
  is a bound parameter;
* image URLs: internal addresses are refused unless allow-listed; an allow-listed local server
  (127.0.0.1, loopback only) shows the size limit, the time limit and redirects are enforced;
  local paths that are not regular files (``/dev/zero``, a FIFO) are refused.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pytest

from signals.errors import ImageError
from signals.images import ImagePolicy, load_image
from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from signals.spec import Examples, SignalSpec
from signals.training import train_signal
from storage.queries import failure_rates, table_counts
from storage.writer import ClickHouseWriter
from streams.events import GenerationEvent, decode_event, encode_event, validate_event
from streams.pipeline import Pipeline
from telltale.signal_store import ClickHouseSignalStore

POSITIVE = ("Buy ACME shares now.", "Put your savings into TSLA.", "Sell bonds, buy NVDA today.")
NEGATIVE = ("Paris is the capital of France.", "Boil pasta for ten minutes.", "Rain is water.")

HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash\\",
    "'; DROP TABLE events; --",
    '" OR 1=1 --',
    "{model:String}",
    "{{ids:Array(String)}}",
    "') UNION SELECT secret FROM system.users --",
    "$1 %s %(x)s ? :name",
    "tab\tnew\nline\rreturn",
    "nul\x00byte",
    "bell\x07 esc\x1b[31mred\x1b[0m del\x7f",
    "\u202eRTL override\u202c and zero\u200bwidth",
    "emoji \U0001f4a5 and CJK 漢字",
    "/* comment */ -- and # comment",
    "x" * 512,
]
LONG_VALUE = "v" * 100_000
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


def hostile_events() -> list[GenerationEvent]:
    events = []
    for i, text in enumerate(HOSTILE):
        attributes = {text: text, f"k{i}": LONG_VALUE, "sql": "SELECT * FROM events"}
        events.append(
            validate_event({
                "event_id": f"{text[:200]}#{i}",
                "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                "model": text,
                "model_version": text[::-1] or "v",
                "app": text,
                "release": text,
                "prompt": {"text": text},
                "output": {"text": f"{POSITIVE[0] if i % 2 else NEGATIVE[0]} {text}"},
                "attributes": attributes,
            })
        )  # fmt: skip
    return events


@pytest.fixture
def hostile_pipeline(
    ch: Any, tiny_embedder: OpenClipEmbedder
) -> Iterator[tuple[Pipeline, list[str]]]:
    names = [
        'it\'s "advice"',
        "'; DROP TABLE signal_scores; --",
        "{signal:String} ` $1 %s",
        "s" * 200,
    ]
    for name in names:
        spec = SignalSpec(
            name=name, threshold=0.5, examples=Examples(positive=POSITIVE, negative=NEGATIVE)
        )
        ClickHouseSignalStore(ch).save(train_signal(spec, tiny_embedder))
    pipeline = Pipeline(
        tiny_embedder,
        LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=0),
        ClickHouseWriter(ch),
    )
    yield pipeline, names


def test_hostile_strings_are_stored_and_queried_verbatim(
    ch: Any, hostile_pipeline: tuple[Pipeline, list[str]]
) -> None:
    pipeline, names = hostile_pipeline
    events = hostile_events()
    result = pipeline.process(events)
    assert (result.written, result.rejected) == (len(events), [])
    assert pipeline.process(events).skipped_existing == len(events)  # ids match back exactly

    counts = table_counts(ch)
    assert (counts.events, counts.scores) == (len(events), len(events) * len(names))
    assert {f.name for f in ClickHouseSignalStore(ch).latest()} == set(names)

    rows = ch.query(
        "SELECT event_id, model, model_version, app, release, prompt_text, attributes"
        " FROM events FINAL ORDER BY timestamp"
    ).result_rows
    for event, row in zip(events, rows, strict=True):
        assert row[0] == event.event_id
        assert (row[1], row[2], row[3], row[4]) == (
            event.model, event.model_version, event.app, event.release,
        )  # fmt: skip
        assert row[5] == event.prompt.text
        assert dict(row[6]) == event.attributes

    for event in events:  # each hostile value as a bound parameter selects exactly its own row
        found = ch.query(
            "SELECT event_id, attributes[{key:String}] FROM events FINAL"
            " WHERE model = {model:String} AND has(mapKeys(attributes), {key:String})",
            parameters={"model": event.model, "key": event.model},
        ).result_rows
        assert found == [(event.event_id, event.model)]

    by_key = {(r.signal, r.model, r.model_version): r for r in failure_rates(ch)}
    assert set(by_key) == {(n, e.model, e.model_version) for n in names for e in events}
    for name in names:
        for event in events:
            [row] = failure_rates(ch, signal=name, model=event.model)
            assert (row.signal, row.model, row.model_version, row.events) == (
                name, event.model, event.model_version, 1,
            )  # fmt: skip
    assert failure_rates(ch, signal="' OR '1'='1") == []
    assert failure_rates(ch, model="x' OR 1=1 --") == []
    assert table_counts(ch).events == len(events)  # nothing was dropped by any of it


def test_hostile_strings_survive_the_wire_format() -> None:
    for event in hostile_events():
        assert decode_event(encode_event(event)) == event


def test_control_characters_are_refused_in_signal_names_only() -> None:
    """Signal names end up in dashboards and alert titles; event fields are stored verbatim."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="control characters"):
        SignalSpec(name="bad\nname", examples=Examples(positive=POSITIVE, negative=NEGATIVE))


# --------------------------------------------------------------------------- image references

INTERNAL = [
    "https://127.0.0.1/a.png",
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://10.0.0.1/a.png",
    "https://localhost/a.png",
    "https://LOCALHOST./a.png",
    "https://[::1]/a.png",
    "https://2130706433/a.png",  # 127.0.0.1 as one decimal number
    "https://0x7f.1/a.png",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://example.com@127.0.0.1/a.png",  # userinfo trick: the host is 127.0.0.1
    "https://127.0.0.1#@example.com/a.png",
]


@contextlib.contextmanager
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any name lookup or connection attempt fails the test (a spy, not a stand-in)."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"network used: {args!r}")

    with monkeypatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket.socket, "connect", refuse)
        yield


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_unless_allow_listed(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = ImagePolicy(allowed_hosts=frozenset({"example.com"}))
    with _no_network(monkeypatch), pytest.raises(ImageError, match="not on the allow-list"):
        load_image(url, policy)  # refused before any name lookup or connection is tried


def test_http_is_refused_by_default_even_for_allow_listed_hosts() -> None:
    policy = ImagePolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    assert "http" not in ImagePolicy().allowed_schemes
    with pytest.raises(ImageError, match="scheme 'http' is not allowed"):
        load_image("http://127.0.0.1:9/a.png", policy)
    for url in ("ftp://127.0.0.1/a.png", "gopher://127.0.0.1/", "jar:file:///x!/a.png"):
        with pytest.raises(ImageError, match="not allowed"):
            load_image(url, policy)


def png_bytes(size: int = 32) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 10)).save(out, format="PNG")
    return out.getvalue()


class _Handler(BaseHTTPRequestHandler):
    image = png_bytes()
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        return

    def do_GET(self) -> None:
        self.requests.append(f"{self.headers.get('Host', '')}{self.path}")
        # The client gives up on /big and /drip, as the size and time limits tell it to.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._respond()

    def _respond(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/image.png":
            self._send(200, self.image)
        elif self.path == "/big":  # larger than the policy allows, no Content-Length
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 65_536)
        elif self.path == "/slow-headers":
            time.sleep(3.0)
            self._send(200, self.image)
        elif self.path == "/drip":  # one byte every 0.2 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.image)))
            self.end_headers()
            for byte in self.image:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/redirect-internal":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/image.png")
            self.end_headers()
        elif self.path == "/redirect-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path == "/redirect-ok":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/image.png")
            self.end_headers()
        else:
            self._send(404, b"not found")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # loopback only
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


LOCAL = ImagePolicy(
    allowed_schemes=frozenset({"http", "https", "data", "file"}),
    allowed_hosts=frozenset({"127.0.0.1"}),
    max_bytes=1_000_000,
    fetch_timeout_s=1.0,
)


def test_an_allow_listed_local_server_serves_an_image(image_server: str) -> None:
    assert load_image(f"{image_server}/image.png", LOCAL).size == (32, 32)
    assert load_image(f"{image_server}/redirect-ok", LOCAL).size == (32, 32)


def test_fetch_size_limit_is_enforced(image_server: str) -> None:
    # /big sends 4 MiB without a Content-Length: the limit is found while reading.
    with pytest.raises(ImageError, match="exceeds 1000000 bytes"):
        load_image(f"{image_server}/big", LOCAL)


def test_fetch_time_limit_is_enforced_for_slow_headers_and_slow_bodies(image_server: str) -> None:
    # /slow-headers: the socket wait gives up. /drip: every read is quick (one byte per 0.2 s,
    # 12+ s for the image), so only the whole-fetch deadline can stop it, with its own message.
    with pytest.raises(ImageError, match="timed out"):
        load_image(f"{image_server}/slow-headers", LOCAL)
    with pytest.raises(ImageError, match=r"took longer than 1\.0s"):
        load_image(f"{image_server}/drip", LOCAL)


def test_redirects_cannot_leave_the_allow_list(image_server: str) -> None:
    for path in ("/redirect-internal", "/redirect-metadata"):
        with pytest.raises(ImageError, match="not on the allow-list"):
            load_image(f"{image_server}{path}", LOCAL)
    assert not [r for r in _Handler.requests if r.startswith("localhost")], _Handler.requests


def test_local_paths_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for ref in ("/dev/zero", "file:///dev/zero", "/dev/urandom", str(fifo), str(tmp_path)):
        with pytest.raises(ImageError, match="not a regular file"):
            load_image(ref, LOCAL)  # refused before opening: a FIFO would block, /dev/zero fill
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + b"\0" * 1_100_000)
    with pytest.raises(ImageError, match="exceeds"):
        load_image(str(big), LOCAL)
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    assert load_image(f"file://{good}", LOCAL).size == (32, 32)
    assert load_image(str(good), LOCAL).size == (32, 32)
