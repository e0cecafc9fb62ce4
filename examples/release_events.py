"""Write sample chat events with a planted regression, as JSONL, for `telltale replay`.

    .venv/bin/python examples/release_events.py > events.jsonl
    .venv/bin/telltale replay events.jsonl --to-kafka

Two versions of `chat-assistant` over the last ~70 minutes: 2026.10 throughout, and 2026.11
released 40 minutes ago as a canary taking half the traffic. About 3% of 2026.10's answers give
stock picks (what the `stock_advice` signal in examples/stock_advice.yaml looks for), and about
30% of 2026.11's: the release-spike detector of `telltale monitor` (or `telltale serve --all`)
opens a detection for 2026.11. Timestamps end 5 minutes ago, so the monitor has seen every
minute once the events are stored.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta

from telltale.sample_data import sample_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-minute", type=int, default=10, help="events a minute per version")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    spacing = timedelta(seconds=60 / args.per_minute)
    old = sample_events(
        rng, model="chat-assistant", model_version="2026.10", count=65 * args.per_minute,
        failure_rate=0.03, start=end - timedelta(minutes=65), kind="chat", spacing=spacing,
    )  # fmt: skip
    new = sample_events(
        rng, model="chat-assistant", model_version="2026.11", count=40 * args.per_minute,
        failure_rate=0.30, start=end - timedelta(minutes=40), kind="chat", spacing=spacing,
    )  # fmt: skip
    events = sorted(old + new, key=lambda e: str(e.payload["timestamp"]))
    for event in events:
        sys.stdout.write(json.dumps(event.payload) + "\n")
    planted = sum(e.planted for e in new)
    print(f"{len(events)} events; 2026.11 has {planted} planted stock picks of {len(new)}",
          file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
