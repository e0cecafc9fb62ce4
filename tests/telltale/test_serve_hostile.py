"""Hostile input at every door of ``telltale serve`` (issue 25): a real ``telltale serve`` process
on 127.0.0.1, started from the environment as a user starts it, real image decoding, the tiny
model, a real https image server with a certificate trusted through ``SSL_CERT_FILE``.

* small files that decode to huge images stay small in memory (the server's peak RSS);
* ``TELLTALE_IMAGES_*`` settings mean in the API what they mean in the worker and replay;
* where local paths are refused, the answer never depends on whether a file exists;
* two requests with the same ``event_id`` in one micro-batch each get their own score;
* slow request heads are cut off, /docs is off, bodies must be JSON, 500s are counted as 500,
  and ``TELLTALE_SERVE_PROTECT_OPS`` puts /readyz and /metrics behind the key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr
from testenv import TINY_ENV, free_port

from signals.images import ImagePolicy, load_image
from telltale.sample_data import image_base64, render_image

KEY = "hostile-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
MAX_BYTES = 16 * 1024  # TELLTALE_IMAGES_MAX_BYTES of the server under test
HEADER_TIMEOUT_S = 1.0


def bomb_png(side: int = 6300) -> bytes:
    """A 1-bit PNG of side x side pixels: under 5 KB, 160 MB once decoded to RGB."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")
    return out.getvalue()


def noise_png(side: int = 200) -> bytes:
    """A PNG that does not compress: ~120 KB for 200 x 200."""
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


# --- the https image server -------------------------------------------------------------------


class _Images(BaseHTTPRequestHandler):
    image: ClassVar[bytes] = b""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/image.png" else 404)
        body = self.image if self.path == "/image.png" else b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Https:
    url: str
    cert: Path


@pytest.fixture(scope="module")
def https_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Https]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    _Images.image = base64.b64decode(image_base64(render_image(random.Random(5), True, 96)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)  # loopback only
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Https(f"https://127.0.0.1:{server.server_address[1]}", cert)
    finally:
        server.shutdown()
        server.server_close()


# --- telltale serve, as a user starts it ------------------------------------------------------


@dataclass
class Served:
    url: str
    pid: int


def _signal_spec(folder: Path) -> Path:
    """An image signal (watermark) trained from files, so image requests get a score."""
    rng = random.Random(3)
    lines = ["name: watermark", "target: output", "modality: image", "kind: few_shot",
             "action: flag", "examples:", "  positive:"]  # fmt: skip
    for label in ("positive", "negative"):
        if label == "negative":
            lines.append("  negative:")
        for i in range(6):
            path = folder / f"{label}-{i}.png"
            render_image(rng, label == "positive", 96).save(path)
            lines.append(f"    - {path.name}")
    spec = folder / "watermark.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, https_images: Https) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("hostile-serve")
    port = free_port()
    env = {
        **os.environ, **TINY_ENV, "PYTHONPATH": os.getcwd(),
        "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip",
        "TELLTALE_CLICKHOUSE_DSN": f"chdb://{folder / 'chdb'}",
        "TELLTALE_SERVE_PORT": str(port),
        "TELLTALE_SERVE_API_KEYS": KEY,
        "TELLTALE_SERVE_PROTECT_OPS": "true",
        "TELLTALE_SERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "TELLTALE_SERVE_BATCH_MAX_WAIT_MS": "300",  # concurrent requests share a batch
        "TELLTALE_IMAGES_ALLOWED_HOSTS": "127.0.0.1",
        "TELLTALE_IMAGES_MAX_BYTES": str(MAX_BYTES),
        "SSL_CERT_FILE": str(https_images.cert),
    }  # fmt: skip
    subprocess.run([sys.executable, "-m", "telltale.cli", "signals", "add",
                    str(_signal_spec(folder))], env=env, check=True,
                   capture_output=True)  # fmt: skip
    pii = folder / "contact_leak.yaml"  # a signal that reads the text: its spans come back
    pii.write_text("name: contact_leak\nkind: pii\naction: block\n"
                   "entities: [EMAIL_ADDRESS, PHONE_NUMBER]\n")  # fmt: skip
    subprocess.run([sys.executable, "-m", "telltale.cli", "signals", "add", str(pii)], env=env,
                   check=True, capture_output=True)  # fmt: skip
    log_path = folder / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "telltale.cli", "serve"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "server did not become ready"
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", headers=HEADERS, timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            yield Served(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _image_event(image: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "model_version": "v", "output": {"image": image}, **extra}


def _post(served: Served, body: dict[str, Any], *, record: bool = True) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/score", params={"record": str(record).lower()},
                      json=body, headers=HEADERS, timeout=120)  # fmt: skip


# --- 1. memory amplification by small images --------------------------------------------------


def test_a_small_file_of_a_huge_image_is_decoded_small() -> None:
    png = bomb_png()
    assert len(png) < 5_000
    image = load_image(base64.b64encode(png).decode())
    assert image.mode == "RGB"
    assert image.width * image.height <= 1_000_000
    assert image.size == (1000, 1000)  # the aspect is kept
    # JPEG is scaled while it is decoded; small images are left alone.
    out = io.BytesIO()
    Image.effect_noise((3000, 2000), 40).convert("RGB").save(out, "JPEG")
    jpeg = load_image(
        base64.b64encode(out.getvalue()).decode(), ImagePolicy(max_decoded_pixels=250_000)
    )
    assert jpeg.width * jpeg.height <= 250_000
    assert math.isclose(jpeg.width / jpeg.height, 1.5, rel_tol=0.01)
    assert load_image(image_base64(render_image(random.Random(1), False, 96))).size == (96, 96)


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_concurrent_decompression_bombs_do_not_blow_up_the_server(served: Served) -> None:
    """8 concurrent 5 KB PNGs of 6300x6300 with record=true: all scored, and the server grows
    by far less than the 8 x 160 MB that full-size RGB copies of one micro-batch would take."""
    if not Path(f"/proc/{served.pid}/status").exists():
        pytest.skip("needs /proc")
    bomb = base64.b64encode(bomb_png()).decode()
    before = _rss_kb(served.pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb(served.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=served.url, headers=HEADERS, timeout=120) as http:
            responses = await asyncio.gather(*(
                http.post("/v1/score", params={"record": "true"}, json=_image_event(bomb))
                for _ in range(8)
            ))  # fmt: skip
        return [r.status_code for r in responses]

    try:
        statuses = asyncio.run(burst())
    finally:
        done.set()
        sampler.join()
    assert statuses == [200] * 8
    grown_mb = (peak[0] - before) / 1024
    assert grown_mb < 500, f"peak RSS grew by {grown_mb:.0f} MB"


# --- 2. the images settings apply to the API --------------------------------------------------


def test_allowed_hosts_setting_applies_to_the_api(served: Served, https_images: Https) -> None:
    response = _post(served, _image_event(f"{https_images.url}/image.png"))
    assert response.status_code == 200, response.text
    assert [s["name"] for s in response.json()["signals"]] == ["watermark"]
    elsewhere = _post(served, _image_event("https://127.0.0.2/image.png"))
    assert elsewhere.status_code == 422
    assert "not on the allow-list" in elsewhere.json()["detail"]


def test_max_bytes_setting_applies_to_the_api(served: Served) -> None:
    big = noise_png()
    assert len(big) > 100_000
    response = _post(served, _image_event(base64.b64encode(big).decode()))
    assert response.status_code == 422, response.text
    assert f"exceeds {MAX_BYTES}" in response.json()["detail"]


# --- 3. no oracle on which paths exist --------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "missing"),
    [
        ("/etc/passwd", "/etc/nonexistentzz"),
        ("/etc/passwd", "/etc/passwx"),
        ("/proc/1/environ", "/proc/99999/environ"),
        ("/etc/hostname", "/etc/hostnamz"),
        ("file:///etc/passwd", "file:///etc/nonexistentzz"),
    ],
)
def test_a_refused_path_gets_the_same_answer_whether_or_not_it_exists(
    served: Served, existing: str, missing: str
) -> None:
    assert Path(existing.removeprefix("file://")).exists()
    assert not Path(missing.removeprefix("file://")).exists()
    answers = [_post(served, _image_event(ref)) for ref in (existing, missing)]
    assert [a.status_code for a in answers] == [422, 422]
    details = [a.json()["detail"] for a in answers]
    assert details[0] == details[1], details
    assert "local image files are not allowed" in details[0]


def test_short_inline_base64_is_still_an_image_where_paths_are_refused() -> None:
    # "/9j/" starts every JPEG in base64: the form decides, and a valid one is an image.
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "JPEG", quality=20)
    ref = base64.b64encode(out.getvalue()).decode()
    assert ref.startswith("/9j/")
    refused = ImagePolicy(allowed_schemes=frozenset({"data", "https"}), allow_local_files=False)
    assert load_image(ref, refused).size == (8, 8)


# --- 6. one event_id twice in one micro-batch -------------------------------------------------


def test_same_event_id_twice_in_one_batch_each_get_their_own_score(served: Served) -> None:
    rng = random.Random(21)
    images = [image_base64(render_image(rng, watermark, 96)) for watermark in (True, False)]
    alone = []
    for image in images:  # each scored alone, under its own id
        response = _post(served, _image_event(image), record=False)
        assert response.status_code == 200, response.text
        alone.append(response.json()["signals"][0]["score"])
    assert abs(alone[0] - alone[1]) > 1e-4, alone  # the two images score apart

    async def together() -> list[httpx.Response]:
        event_id = f"twice-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(base_url=served.url, headers=HEADERS, timeout=120) as http:
            return list(await asyncio.gather(*(
                http.post("/v1/score", json=_image_event(image, event_id=event_id))
                for image in images
            )))  # fmt: skip

    batches_before = _metric(served, "telltale_serve_batch_size_count")
    responses = asyncio.run(together())
    assert _metric(served, "telltale_serve_batch_size_count") - batches_before == 1  # one batch
    scores = [r.json()["signals"][0]["score"] for r in responses]
    assert scores == pytest.approx(alone, abs=1e-5)


def _metric(served: Served, name: str, labels: str = "") -> float:
    text = httpx.get(f"{served.url}/metrics", headers=HEADERS, timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- 7. smaller risks -------------------------------------------------------------------------


def _closed_within(served: Served, first_bytes: bytes, seconds: float) -> float | None:
    """Seconds until the server closed a connection that sent ``first_bytes`` of a request head
    and then nothing; None if it was still open after ``seconds``."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        started = time.monotonic()
        if first_bytes:
            sock.sendall(first_bytes)
        try:
            while sock.recv(1024):
                pass
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
        return time.monotonic() - started


@pytest.mark.parametrize(
    "first_bytes",
    [b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl", b"", b"G"],
)
def test_a_slow_request_head_is_cut_off(served: Served, first_bytes: bytes) -> None:
    closed_after = _closed_within(served, first_bytes, HEADER_TIMEOUT_S + 4)
    assert closed_after is not None, "the server kept waiting for the request head"
    assert closed_after < HEADER_TIMEOUT_S + 2


def test_a_slow_head_on_a_kept_alive_connection_is_cut_off(served: Served) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT_S + 4) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):  # head and body may come apart
            first += sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request's head, then nothing
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2


def test_a_quick_request_is_not_cut_off(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as http:
        for _ in range(3):  # one kept-alive connection, pauses shorter than the deadline
            assert http.get("/healthz").status_code == 200
            time.sleep(HEADER_TIMEOUT_S / 2)


def test_docs_are_off_by_default_and_openapi_stays(served: Served) -> None:
    assert httpx.get(f"{served.url}/docs", headers=HEADERS, timeout=10).status_code == 404
    assert httpx.get(f"{served.url}/redoc", headers=HEADERS, timeout=10).status_code == 404
    assert httpx.get(f"{served.url}/openapi.json", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 415), ("application/x-www-form-urlencoded", 415), (None, 415),
     ("application/json; charset=utf-8", 200), ("application/cloudevents+json", 200)],
)  # fmt: skip
def test_score_requires_a_json_content_type(
    served: Served, content_type: str | None, status: int
) -> None:
    body = b'{"model": "m", "model_version": "v", "output": {"text": "hello"}}'
    headers = dict(HEADERS)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = httpx.post(f"{served.url}/v1/score", content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    if status == 415:
        assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
def test_protect_ops_puts_readyz_and_metrics_behind_the_key(served: Served, path: str) -> None:
    assert httpx.get(f"{served.url}{path}", timeout=10).status_code == 401
    assert httpx.get(f"{served.url}{path}", headers={"X-API-Key": "wrong"},
                     timeout=10).status_code == 401  # fmt: skip
    assert httpx.get(f"{served.url}{path}", headers=HEADERS, timeout=10).status_code == 200
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200  # probes


class _NaNText:
    """The tiny model, except that texts containing "overflow" embed to NaN (as an fp16
    overflow would): the signal's score is then NaN and the response cannot be built."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.id, self.dim = inner.id, inner.dim

    def embed_texts(self, texts: Sequence[str]) -> Any:
        vectors = np.array(self._inner.embed_texts(texts), dtype=np.float32)
        vectors[[i for i, t in enumerate(texts) if "overflow" in t]] = np.nan
        return vectors

    def embed_images(self, images: Sequence[Any]) -> Any:
        return self._inner.embed_images(images)


def test_a_500_is_counted_as_500(tiny_embedder: Any) -> None:
    import uvicorn

    from signals.live import LiveSignals
    from signals.spec import load_spec
    from signals.store import InMemorySignalStore
    from signals.training import train_signal
    from telltale.serving import GuardrailService, create_app
    from telltale.settings import ServeSettings

    store = InMemorySignalStore()
    store.save(train_signal(load_spec("examples/stock_advice.yaml"), tiny_embedder), author="t")
    live = LiveSignals(store, tiny_embedder.id, 0)
    service = GuardrailService(_NaNText(tiny_embedder), live,  # type: ignore[arg-type]
                               ServeSettings(api_keys=SecretStr(KEY)))  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        event = {"model": "m", "model_version": "v", "output": {"text": "stack overflow"}}
        response = httpx.post(f"{url}/v1/score", json=event, headers=HEADERS, timeout=60)
        assert response.status_code == 500
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'telltale_serve_request_seconds_count{status="500"} 1.0' in metrics
        assert 'status="200"' not in metrics
    finally:
        server.should_exit = True
        thread.join(30)


# --- signals that read the text answer with the spans they matched ------------------------------


def test_a_pii_signal_blocks_and_names_the_spans_it_matched(served: Served) -> None:
    text = "Sure! Write to ana.silva@silva-mail.net or call +1 415 555 0132 after six."
    answer = _post(served, {"model": "m", "model_version": "v", "output": {"text": text}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [leak] = [s for s in body["signals"] if s["name"] == "contact_leak"]
    assert (body["verdict"], leak["flagged"], leak["field"]) == ("block", True, "output.text")
    spans = {(m["label"], text[m["start"] : m["end"]]) for m in leak["matches"]}
    assert spans == {("EMAIL_ADDRESS", "ana.silva@silva-mail.net"),
                     ("PHONE_NUMBER", "+1 415 555 0132")}  # fmt: skip
    clean = _post(served, {"model": "m", "model_version": "v",
                           "output": {"text": "Order 4411-2093 ships on Monday."}})  # fmt: skip
    [none] = [s for s in clean.json()["signals"] if s["name"] == "contact_leak"]
    assert (clean.json()["verdict"], none["flagged"], none["matches"]) == ("pass", False, [])
