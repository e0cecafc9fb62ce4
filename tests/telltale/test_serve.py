"""``telltale serve`` over HTTP: a real uvicorn server on 127.0.0.1, real chDB, the tiny model.

Covers the OpenAPI contract (schemathesis: no 5xx, responses conform), bad input (4xx with the
reason), API keys, size limits, record=true into storage, metrics, a concurrency test that checks
each response belongs to its request, and SIGTERM draining requests in flight (a subprocess).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from testenv import TINY_ENV, free_port

from signals.actions import guardrail_decision
from signals.live import LiveSignals
from signals.spec import load_spec
from signals.training import train_signal
from storage.client import connect
from storage.migrate import migrate
from storage.serialized import SerializedClient
from storage.writer import ClickHouseWriter
from streams.pipeline import Pipeline
from streams.recording import storage_recorder
from streams.scoring import Scored, Scorer, ScoreRequest
from telltale.serving import GuardrailService, create_app
from telltale.settings import ServeSettings
from telltale.signal_store import ClickHouseSignalStore

KEY = "test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
ADVICE = [
    "You should buy ACME shares today; they will double by spring.",
    "Put your savings into NVDA stock now, it is a sure win.",
    "Sell your index funds and buy TSLA immediately.",
    "I recommend buying 100 shares of GME before earnings.",
    "PLTR is undervalued, load up on it and hold.",
    "Move everything into COIN call options this week.",
]
NEUTRAL = [
    "Spread savings across diversified, low-cost index funds.",
    "Water evaporates, condenses into clouds and falls as rain.",
    "Mix flour, eggs and milk, then fry thin rounds in butter.",
    "Keep a regular schedule and avoid screens before bed.",
    "Start with the official tutorial and write small programs daily.",
    "Track spending for a month, then set limits per category.",
]


@dataclass
class Running:
    url: str
    service: GuardrailService
    client: Any
    scorer: Scorer


def _train(client: Any, embedder: Any) -> None:
    for path in ("examples/stock_advice.yaml", "examples/jailbreak.yaml"):
        ClickHouseSignalStore(client).save(train_signal(load_spec(path), embedder), author="test")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_embedder: Any) -> Iterator[Running]:
    import uvicorn

    raw = connect(f"chdb://{tmp_path_factory.mktemp('serve') / 'chdb'}")
    migrate(raw)
    client = SerializedClient(raw)
    _train(client, tiny_embedder)
    live = LiveSignals(ClickHouseSignalStore(client), tiny_embedder.id, refresh_s=0.5)  # type: ignore[arg-type]
    settings_ = ServeSettings(
        api_keys=SecretStr(f"other-key,{KEY}"), max_body_bytes=64 * 1024, batch_max_wait_ms=20
    )
    recorder = storage_recorder(
        Pipeline(tiny_embedder, live, ClickHouseWriter(client))  # type: ignore[arg-type]
    )
    service = GuardrailService(tiny_embedder, live, settings_, recorder=recorder)
    port = free_port()
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_config=None,
                            access_log=False, lifespan="on")  # fmt: skip
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield Running(f"http://127.0.0.1:{port}", service, client, Scorer(tiny_embedder, live))
    finally:
        uv.should_exit = True
        thread.join(30)
        client.close()


def _event(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat-assistant", "model_version": "2026.11",
            "prompt": {"text": "Any tips?"}, "output": {"text": text}, **extra}  # fmt: skip


def test_score_returns_every_signal_and_a_consistent_verdict(server: Running) -> None:
    verdicts = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
        assert http.get("/readyz").json() == {"ready": True, "signals": 2, "detail": ""}
        for text in ADVICE + NEUTRAL:
            response = http.post("/v1/score", json=_event(text))
            assert response.status_code == 200, response.text
            body = response.json()
            assert {s["name"] for s in body["signals"]} == {"stock_advice", "jailbreak_attempt"}
            assert body["recorded"] is False and len(body["event_id"]) == 32
            expected = server.scorer.score([ScoreRequest(_validated(text))])[0]
            assert isinstance(expected, Scored)
            got = {s["name"]: s for s in body["signals"]}
            for s in expected.signals:
                assert got[s.name]["score"] == pytest.approx(s.score, abs=1e-5)
                assert got[s.name]["flagged"] == s.flagged
                assert got[s.name]["action"] == {"stock_advice": "block",
                                                  "jailbreak_attempt": "flag"}[s.name]  # fmt: skip
            assert body["verdict"] == guardrail_decision(expected.signals)
            verdicts.append(body["verdict"])
    assert "block" in verdicts  # the trained signal flags some of its own positives


def _validated(text: str) -> Any:
    from streams.events import validate_event

    return validate_event({**_event(text), "event_id": "x", "timestamp": "2026-11-30T10:00:00Z"})


def test_record_true_stores_the_event_with_its_scores(server: Running) -> None:
    event_id = f"rec-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
        body = http.post(
            "/v1/score", params={"record": "true"},
            json=_event(ADVICE[0], event_id=event_id, timestamp="2026-11-30T10:00:00Z"),
        ).json()  # fmt: skip
    assert body["recorded"] is True and body["record_error"] is None
    rows = server.client.query(
        "SELECT signal, flagged FROM signal_scores WHERE event_id = {e:String} ORDER BY signal",
        parameters={"e": event_id},
    ).result_rows
    assert {name: bool(f) for name, f in rows} == {s["name"]: s["flagged"] for s in body["signals"]}
    fields = server.client.query(
        "SELECT field FROM embeddings WHERE event_id = {e:String} ORDER BY field",
        parameters={"e": event_id},
    ).result_rows
    assert fields == [("output.text",), ("prompt.text",)]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-API-Key": ""}, 401),
        ({"X-API-Key": KEY}, 200),
        ({"Authorization": "Bearer other-key"}, 200),
        ({"Authorization": "Basic " + base64.b64encode(f"me:{KEY}".encode()).decode()}, 200),
        ({"Authorization": "Basic !!!"}, 401),
    ],
)
def test_api_keys(server: Running, headers: dict[str, str], status: int) -> None:
    response = httpx.post(f"{server.url}/v1/score", json=_event("hi"), headers=headers, timeout=60)
    assert response.status_code == status
    if status == 401:
        assert "API key" in response.json()["detail"]
        assert "Bearer" in response.headers["www-authenticate"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes need no key


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"model": "m", "output": {"text": "x"}}', 422, "model_version"),
        (b'{"model": "m", "model_version": "v"}', 422, "at least one of"),
        (b'{"model": "m", "model_version": "v", "timestamp": 1700000000, "output": {"text": "x"}}',
         422, "RFC 3339"),
        (b'{"model": "m", "model_version": "v", "output": {"text": "x"}, "feedback": NaN}', 400,
         "not valid JSON"),
    ],
)  # fmt: skip
def test_bad_input_gets_4xx_with_the_reason(
    server: Running, body: bytes, status: int, reason: str
) -> None:
    response = httpx.post(f"{server.url}/v1/score", content=body, timeout=60,
                          headers={**HEADERS, "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


@pytest.mark.parametrize("image", ["/etc/hostname", "file:///etc/hostname", "aGVsbG8=",
                                   "https://example.com/cat.png"])  # fmt: skip
def test_images_must_be_inline_or_allow_listed(server: Running, image: str) -> None:
    # record=true needs every field's vector, so the image is loaded even without an image
    # signal; a path on the server's disk is never read.
    response = httpx.post(f"{server.url}/v1/score", params={"record": "true"}, timeout=60,
                          json={"model": "m", "model_version": "v", "output": {"image": image}},
                          headers=HEADERS)  # fmt: skip
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("output.image: ")


def test_bad_query_and_oversized_bodies(server: Running) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
        response = http.post("/v1/score", params={"record": "maybe"}, json=_event("x"))
        assert response.status_code == 422 and "record" in response.json()["detail"]
        big = _event("x" * (70 * 1024))
        response = http.post("/v1/score", json=big)
        assert response.status_code == 413 and "exceeds" in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            yield b'{"model": "m", "model_version": "v", "output": {"text": "'
            for _ in range(80):
                yield b"x" * 1024
            yield b'"}}'

        response = http.post("/v1/score", content=chunks(),
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 413 and "exceeds" in response.json()["detail"]


def test_concurrent_requests_each_get_their_own_answer(server: Running) -> None:
    texts = [f"{t} (case {i})" for i, t in enumerate((ADVICE + NEUTRAL) * 3)]
    before = server.service.batcher.stats.batches

    async def run() -> list[tuple[str, dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=120) as http:

            async def one(i: int, text: str) -> tuple[str, dict[str, Any]]:
                event_id = f"conc-{i}-{uuid.uuid4().hex[:6]}"
                response = await http.post("/v1/score", json=_event(text, event_id=event_id))
                assert response.status_code == 200, response.text
                return event_id, response.json()

            return await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))

    answers = asyncio.run(run())
    for (event_id, body), text in zip(answers, texts, strict=True):
        assert body["event_id"] == event_id
        expected = server.scorer.score([ScoreRequest(_validated(text))])[0]
        assert isinstance(expected, Scored)
        got = {s["name"]: s["score"] for s in body["signals"]}
        assert got == pytest.approx({s.name: s.score for s in expected.signals}, abs=1e-5)
    batches = server.service.batcher.stats.batches - before
    assert batches < len(texts)  # requests shared model calls


def test_metrics_expose_latency_batches_cache_and_flags(server: Running) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as http:
        for text in ADVICE:
            http.post("/v1/score", json=_event(text))
        text = httpx.get(f"{server.url}/metrics").text
    assert 'telltale_serve_request_seconds_bucket{le="0.5",status="200"}' in text
    assert "telltale_serve_batch_size_count" in text
    assert "telltale_serve_embedding_cache_hits_total" in text
    assert 'telltale_serve_verdicts_total{verdict="block"}' in text
    assert 'telltale_serve_signal_flags_total{action="block",signal="stock_advice"}' in text
    # the per-signal counters the worker has too: signal, model and version labels only
    labels = 'model="chat-assistant",model_version="2026.11",signal="stock_advice"'
    assert f"telltale_serve_signal_scored_total{{{labels}}}" in text
    assert f"telltale_serve_signal_flagged_total{{{labels}}}" in text
    assert (
        'telltale_serve_events_scored_total{model="chat-assistant",model_version="2026.11"}' in text
    )


def test_openapi_contract(server: Running) -> None:
    """schemathesis against the served schema: for generated requests to every operation, no
    5xx, and status codes, content types and bodies as the schema documents them."""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]  # fmt: skip
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/score", "/healthz", "/readyz", "/metrics"}
    statuses: dict[str, list[int]] = {}

    def send(case: Any) -> None:
        # schemathesis's own transport (requests) breaks beside urllib3-future, so the request
        # goes through httpx and schemathesis validates the response.
        kwargs = case.as_transport_kwargs(base_url=server.url, headers=HEADERS)
        if isinstance(kwargs.get("data"), bytes | str):
            kwargs["content"] = kwargs.pop("data")
        response = httpx.request(**kwargs, timeout=60)
        statuses.setdefault(case.path, []).append(response.status_code)
        case.validate_response(response, checks=checks)

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            send(case)

        call()
    # Every operation was called, and generated bodies were refused with a documented 422.
    assert {op.path for op in operations} == set(statuses)
    assert 422 in statuses["/v1/score"]
    # Random bodies rarely pass the event contract (30 draws gave none in one CI run), so a
    # valid event is sent through the same checks: the 200 response must conform too.
    score = next(op for op in operations if op.path == "/v1/score")
    send(score.Case(method="POST", body=_event(ADVICE[0]), media_type="application/json"))
    assert statuses["/v1/score"][-1] == 200


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight(tmp_path: Path) -> None:
    # Its own processes: chDB allows one data path per process, and this one has the server's.
    dsn = f"chdb://{tmp_path / 'chdb'}"
    port = free_port()
    env = {**os.environ, **TINY_ENV, "TELLTALE_CLICKHOUSE_DSN": dsn,
           "TELLTALE_SERVE_BATCH_MAX_WAIT_MS": "3000", "PYTHONPATH": os.getcwd()}  # fmt: skip
    subprocess.run([sys.executable, "-m", "telltale.cli", "signals", "add",
                    "examples/stock_advice.yaml"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "telltale.cli", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        results: dict[int, httpx.Response] = {}

        def call(i: int) -> None:
            results[i] = httpx.post(f"{url}/v1/score", json=_event(ADVICE[i]), timeout=60)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        # The requests now wait in the batcher (up to 3 s for others to join their batch).
        deadline = time.monotonic() + 30
        while "telltale_serve_in_flight 3.0" not in _metrics(url):
            assert time.monotonic() < deadline, _metrics(url)
            time.sleep(0.05)
        assert "telltale_serve_batch_size_count 0.0" in _metrics(url)  # none scored yet
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert sorted(results) == [0, 1, 2]
        for response in results.values():
            assert response.status_code == 200, response.text
            assert response.json()["verdict"] in {"block", "flag", "pass"}
        # uvicorn re-raises SIGTERM once it has shut down gracefully (the conventional exit)
        assert proc.wait(60) in (0, -signal.SIGTERM)
        log.flush()
        output = (tmp_path / "serve.log").read_text()
        assert "guardrail stopped" in output and "Traceback" not in output
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


def test_the_api_alone_retrains_signals_of_another_embedder_between_batches(
    tiny_embedder: Any,
) -> None:
    """``telltale serve`` without ``--all`` has no worker to retrain signals trained on another
    embedder: the service does it on its scoring thread, and applies the retrain."""
    from signals.live import retrainer
    from signals.open_clip_embedder import OpenClipEmbedder
    from signals.store import InMemorySignalStore

    other = OpenClipEmbedder(model_name="telltale-tiny", pretrained=None, seed=9)
    store = InMemorySignalStore()
    store.save(train_signal(load_spec("examples/stock_advice.yaml"), other), author="test")
    live = LiveSignals(store, tiny_embedder.id, 0, retrainer(store, tiny_embedder))

    async def run(maintained: bool) -> list[str]:
        service = GuardrailService(
            tiny_embedder, live, ServeSettings(),
            maintenance=live.retrain_stale if maintained else None, maintenance_interval_s=0.05,
        )  # fmt: skip
        await service.start()
        try:
            for _ in range(1200):  # up to a minute for the tiny model to train
                if not maintained or store.latest()[0].embedder_id == tiny_embedder.id:
                    break
                await asyncio.sleep(0.05)
            result = await service.score(_validated(ADVICE[0]), record=False)
        finally:
            await service.stop()
        assert isinstance(result, Scored)
        return [s.name for s in result.signals]

    assert asyncio.run(run(maintained=False)) == []  # not applied, and not retrained
    assert [v for v, _, _ in store.versions("stock_advice")] == [1]
    assert asyncio.run(run(maintained=True)) == ["stock_advice"]
    assert [(v, e, a) for v, e, a in store.versions("stock_advice")][1:] == [
        (2, tiny_embedder.id, "auto-retrain from v1")
    ]
