"""What slices cost on the write path: score rows with and without slice values, side by side.

    .venv/bin/python bench/slices.py [--events 50000] [--keys 3] [--json]

Inserts the same generated score rows (one signal, ``events`` events in batches of 5,000) into
two fresh chDB databases: once with no slice values, once with ``app`` plus ``keys`` slice keys
(values from a realistic mix, capped as the pipeline caps them). Prints rows/s of both, the
ratio, and the rows the per-minute rate views hold afterwards. One run, this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from storage.client import connect  # noqa: E402
from storage.migrate import migrate  # noqa: E402
from storage.rows import ScoreRow, WriteBatch  # noqa: E402
from storage.writer import ClickHouseWriter  # noqa: E402

_VALUES = {
    "locale": ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "ja", "ko"],
    "customer_tier": ["free", "pro", "enterprise"],
    "prompt_template": [f"t{i}" for i in range(20)],
    "region": ["eu", "us", "apac"],
}


def _rows(n: int, keys: int, seed: int = 0) -> list[ScoreRow]:
    rng = random.Random(seed)
    start = datetime(2026, 9, 14, tzinfo=UTC)
    names = list(_VALUES)[:keys]
    out = []
    for i in range(n):
        slices = {"app": rng.choice(["web", "mobile"])} if keys >= 0 else {}
        slices |= {k: rng.choice(_VALUES[k]) for k in names}
        out.append(ScoreRow(f"e{i:08d}", "stock_advice", 1, start + timedelta(seconds=i * 0.5),
                            "chat", "v1", rng.random(), rng.random() < 0.05,
                            slices if keys >= 0 else {}))  # fmt: skip
    return out


def _run(rows: list[ScoreRow], batch: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/db")
        migrate(client)
        writer = ClickHouseWriter(client)
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            writer.write(WriteBatch(scores=rows[i : i + batch]))
        seconds = time.perf_counter() - started
        rates = int(client.query("SELECT count() FROM failure_rates_1m").result_rows[0][0])
        sliced = int(client.query("SELECT count() FROM failure_rates_by_slice_1m")
                     .result_rows[0][0])  # fmt: skip
        client.close()
    return len(rows) / seconds, rates, sliced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=3, help="slice keys besides app (max 4)")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plain = _run(_rows(args.events, -1), args.batch)
    sliced = _run(_rows(args.events, min(args.keys, 4)), args.batch)
    result = {
        "events": args.events, "keys": 1 + min(args.keys, 4),
        "rows_per_s_without_slices": round(plain[0]), "rows_per_s_with_slices": round(sliced[0]),
        "ratio_with_over_without": round(sliced[0] / plain[0], 3),
        "rate_rows_without": plain[1] + plain[2], "rate_rows_with": sliced[1] + sliced[2],
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
