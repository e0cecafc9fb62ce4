"""Generated production-shaped logs for the slice and discovery scenarios (tests and notes).

Run as a script to write JSONL logs for ``telltale replay``::

    python tests/support/log_generators.py slices --out slices.jsonl
    python tests/support/log_generators.py discovery --out discovery.jsonl

``slices``: a chat model whose release ``2026.11`` regresses only for German free-tier users
(``locale=de`` and ``customer_tier=free``); every other slice keeps the old failure rate. The
old version keeps serving a share of traffic after the release (a canary), as in production.

``discovery``: two days of a chat model's outputs in several ordinary formats; on the second
day 3 % of outputs come in a new format (a JSON tool-call blob) that no signal names.

Failures are chat answers that give stock picks (what ``examples/stock_advice.yaml`` flags).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from telltale.sample_data import advice_text, neutral_text

__all__ = ["discovery_events", "slice_regression_events", "tool_call_text"]

MODEL = "chat-assistant"
OLD, NEW = "2026.10", "2026.11"
LOCALES = (("en", 0.45), ("de", 0.2), ("fr", 0.15), ("es", 0.12), ("it", 0.08))
TIERS = (("free", 0.5), ("pro", 0.35), ("enterprise", 0.15))
TEMPLATES = (("qa", 0.5), ("summarize", 0.3), ("rewrite", 0.2))
APPS = (("web", 0.7), ("mobile", 0.3))


def _pick(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _event(
    rng: random.Random, i: int, at: datetime, version: str, output: str, attributes: dict[str, str]
) -> dict[str, Any]:
    return {
        "event_id": f"{MODEL}-{version}-{i:06d}-{rng.getrandbits(32):08x}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "model": MODEL,
        "model_version": version,
        "app": _pick(rng, APPS),
        "prompt": {"text": f"[{attributes['prompt_template']}] question {rng.randint(1, 500)}"},
        "output": {"text": output},
        "latency_ms": round(rng.uniform(200, 2500), 1),
        "attributes": attributes,
    }


def slice_regression_events(
    *,
    start: datetime = datetime(2026, 9, 14, 6, 0, tzinfo=UTC),
    hours_before: float = 3.0,
    hours_after: float = 3.0,
    per_minute: int = 20,
    base_rate: float = 0.04,
    regressed_rate: float = 0.40,
    canary_share: float = 0.3,
    seed: int = 13,
) -> Iterator[dict[str, Any]]:
    """Events of the slice scenario (module docstring), in time order.

    The new version is released at ``start + hours_before``; afterwards ``canary_share`` of the
    traffic still goes to the old version.
    """
    rng = random.Random(seed)
    release = start + timedelta(hours=hours_before)
    total = int((hours_before + hours_after) * 60 * per_minute)
    step = timedelta(minutes=1) / per_minute
    for i in range(total):
        at = start + step * i
        version = OLD if at < release or rng.random() < canary_share else NEW
        attributes = {
            "locale": _pick(rng, LOCALES),
            "customer_tier": _pick(rng, TIERS),
            "prompt_template": _pick(rng, TEMPLATES),
            "user.id": f"u{rng.randint(1, 5000)}",
        }
        regressed = version == NEW and attributes["locale"] == "de"
        regressed = regressed and attributes["customer_tier"] == "free"
        failed = rng.random() < (regressed_rate if regressed else base_rate)
        output = advice_text(rng) if failed else neutral_text(rng)
        yield _event(rng, i, at, version, output, attributes)


_FORMATS = (
    lambda rng: neutral_text(rng),
    lambda rng: "Sure! " + neutral_text(rng) + " Let me know if you need more.",
    lambda rng: "- " + "\n- ".join(neutral_text(rng).split(". ")),
    lambda rng: "Short answer: " + neutral_text(rng).split(". ")[-1],
)


def tool_call_text(rng: random.Random) -> str:
    """The planted new format: a raw JSON tool call leaking into the answer."""
    call = {
        "tool": rng.choice(["web_search", "calculator", "calendar_lookup", "kb_fetch"]),
        "arguments": {"query": f"q{rng.randint(1, 9999)}", "top_k": rng.choice([3, 5, 10])},
        "call_id": f"call_{rng.getrandbits(40):010x}",
    }
    return json.dumps(call)


def discovery_events(
    *,
    start: datetime = datetime(2026, 9, 14, 0, 0, tzinfo=UTC),
    days: int = 2,
    per_hour: int = 80,
    planted_share: float = 0.03,
    advice_rate: float = 0.03,
    seed: int = 31,
) -> Iterator[dict[str, Any]]:
    """Events of the discovery scenario: the planted format appears on the last day only.

    Each event carries ``attributes.planted`` ("1" for the planted format) so a test can score
    what discovery found against the truth; nothing in telltale reads it.
    """
    rng = random.Random(seed)
    total = days * 24 * per_hour
    step = timedelta(hours=1) / per_hour
    last_day = start + timedelta(days=days - 1)
    for i in range(total):
        at = start + step * i
        planted = at >= last_day and rng.random() < planted_share
        if planted:
            output = tool_call_text(rng)
        elif rng.random() < advice_rate:
            output = advice_text(rng)
        else:
            output = rng.choice(_FORMATS)(rng)
        attributes = {
            "locale": _pick(rng, LOCALES),
            "customer_tier": _pick(rng, TIERS),
            "prompt_template": _pick(rng, TEMPLATES),
            "planted": "1" if planted else "0",
        }
        yield _event(rng, i, at, OLD, output, attributes)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("slices", "discovery"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    events = slice_regression_events() if args.scenario == "slices" else discovery_events()
    count = 0
    with args.out.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
            count += 1
    print(f"wrote {count} events to {args.out}")


if __name__ == "__main__":
    _main()
