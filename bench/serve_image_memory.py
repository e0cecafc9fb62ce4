"""Memory of ``telltale serve`` under small files that decode to huge images (issue 25, item 1).

    .venv/bin/python bench/serve_image_memory.py [--n 32] [--side 6300] [--json]

Starts a real ``telltale serve`` on 127.0.0.1 (its own chDB in a temporary folder, the bundled
``telltale-tiny`` open_clip model with seeded random weights for images and text: the model is
not what is measured), then POSTs ``--n`` concurrent copies of a 1-bit PNG of ``--side`` x
``--side`` pixels (6300: 4.9 KB on the wire, just under the 40 M pixel limit, 160 MB as RGB in
Pillow) to ``/v1/score?record=true``, and samples the server's resident memory
(``/proc/PID/status``, every 10 ms) throughout. It prints the RSS before the burst (baseline),
the peak during it, the RSS ``--settle`` seconds after the last answer (after), the wall time of
the burst and the status codes.

Environment variables pass through to the server, so ``TELLTALE_IMAGES_MAX_DECODED_PIXELS`` (and
any other setting) can be compared run against run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like the packages they measure: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import collections  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def bomb_png(side: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")
    return out.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    env = {
        "TELLTALE_EMBEDDER_MODEL_NAME": "telltale-tiny", "TELLTALE_EMBEDDER_PRETRAINED": "none",
        "TELLTALE_EMBEDDER_SEED": "0", "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip",
        **os.environ,
        "TELLTALE_CLICKHOUSE_DSN": f"chdb://{folder / 'chdb'}",
        "TELLTALE_SERVE_HOST": "127.0.0.1", "TELLTALE_SERVE_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "telltale.cli", "serve"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError((folder / "serve.log").read_text())
        if time.monotonic() > deadline:
            raise RuntimeError("telltale serve did not become ready")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)


async def burst(url: str, body: dict[str, Any], n: int) -> list[int]:
    import httpx

    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/score", params={"record": "true"}, json=body) for _ in range(n))
        )
    return [r.status_code for r in responses]


def run(n: int, side: int, settle_s: float) -> dict[str, Any]:
    png = bomb_png(side)
    body = {"model": "m", "model_version": "v",
            "output": {"image": base64.b64encode(png).decode()}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="telltale-bench-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            time.sleep(2.0)  # let start-up allocations settle
            baseline = rss_mb(proc.pid)
            peak = [baseline]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(proc.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            statuses = asyncio.run(burst(url, body, n))
            wall = time.perf_counter() - started
            time.sleep(settle_s)
            done.set()
            sampler.join()
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "n": n, "side": side, "png_bytes": len(png),
        "max_decoded_pixels": os.environ.get("TELLTALE_IMAGES_MAX_DECODED_PIXELS", "default"),
        "rss_baseline_mb": round(baseline), "rss_peak_mb": round(peak[0]),
        "rss_after_mb": round(after), "wall_s": round(wall, 2),
        "statuses": dict(collections.Counter(statuses)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="concurrent requests")
    parser.add_argument("--side", type=int, default=6300, help="image side in pixels")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before 'after'")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    result = run(args.n, args.side, args.settle)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['n']} concurrent {args.side}x{args.side} 1-bit PNGs "
          f"({result['png_bytes']} bytes each), record=true")  # fmt: skip
    print(f"  RSS baseline {result['rss_baseline_mb']} MB, peak {result['rss_peak_mb']} MB, "
          f"after {result['rss_after_mb']} MB")  # fmt: skip
    print(f"  wall {result['wall_s']} s, statuses {result['statuses']}")


if __name__ == "__main__":
    main()
