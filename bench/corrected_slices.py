"""A regression in one slice, scored by a noisy signal: raw flag rates against corrected rates.

    .venv/bin/python bench/corrected_slices.py [--events 12000] [--labels 160] [--seed 7]

The log: a chat model on two versions, five locales (en 45 %, de 20 %, fr 15 %, es 12 %,
it 8 %); 2 % of answers fail everywhere except German answers of ``v2``, 40 % of which fail.
Answers come from a pool of templates, so many are repeated word for word (retries, stock
phrasings). The signal is noisy, as a weak few-shot signal is: sensitivity 0.75, specificity
0.78, so on untouched locales it flags ~23 % where 2 % fail.

Everything runs as a user would run it, on chDB: the events and scores are stored, one audit of
``--labels`` events is drawn (``signals audit``) and answered from the planted truth, and
``telltale rates --by locale --corrected --format json`` is read. Printed per locale of ``v2``:
events, raw flag rate, corrected rate with its interval, the true failure rate; then how far the
regressed locale stands out from the highest other locale on each.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import numpy as np  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from signals import SignalSpec, fit_signal  # noqa: E402
from storage import ClickHouseWriter, connect, migrate  # noqa: E402
from storage.rows import EventRow, ScoreRow, WriteBatch  # noqa: E402
from telltale.cli import app  # noqa: E402
from telltale.signal_store import ClickHouseSignalStore  # noqa: E402
from telltale.trust import Answer, draw, import_answers  # noqa: E402

LOCALES = (("en", 0.45), ("de", 0.2), ("fr", 0.15), ("es", 0.12), ("it", 0.08))
SENSITIVITY, SPECIFICITY = 0.75, 0.78
START = datetime(2026, 11, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--labels", type=int, default=160)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    path = Path(tempfile.mkdtemp()) / "db"
    client = connect(f"chdb://{path}")
    migrate(client)
    vectors = np.random.default_rng(args.seed)
    fitted = ClickHouseSignalStore(client).save(fit_signal(
        SignalSpec(name="stock_advice", description="recommends buying or selling stocks"),
        vectors.normal(1, 1, (6, 16)).astype(np.float32),
        vectors.normal(-1, 1, (6, 16)).astype(np.float32), "bench",
    ))  # fmt: skip
    good = [f"Here is a short answer about topic {i}." for i in range(400)]
    bad = [f"You should buy shares of company {i} now." for i in range(150)]
    truth: dict[str, bool] = {}
    batch = WriteBatch()
    for i in range(args.events):
        at = START + timedelta(seconds=20 * i)
        version = "v1" if i < args.events // 2 else "v2"
        locale = rng.choices([c for c, _ in LOCALES], [w for _, w in LOCALES])[0]
        failed = rng.random() < (0.40 if (version, locale) == ("v2", "de") else 0.02)
        text = rng.choice(bad if failed else good)
        # the classifier is deterministic: one text, one flag, however often it is repeated
        flagged = random.Random(text).random() < (SENSITIVITY if failed else 1 - SPECIFICITY)
        event_id = f"e{i}"
        truth[event_id] = failed
        batch.events.append(EventRow(event_id, at, "chat", version, output_text=text,
                                     attributes={"locale": locale}))  # fmt: skip
        batch.scores.append(ScoreRow(event_id, "stock_advice", fitted.version, at, "chat",
                                     version, 0.9 if flagged else 0.1, flagged,
                                     {"app": "", "locale": locale}))  # fmt: skip
    ClickHouseWriter(client).write(batch)
    drawn = draw(client, fitted, args.labels, audit_id=f"bench-{args.seed}")
    answers = [Answer(n, s.event_id, int(truth[s.event_id]), None)
               for n, s in enumerate(drawn.samples, 1)]  # fmt: skip
    import_answers(client, "stock_advice", answers, labeller="planted-truth")
    client.close()

    result = CliRunner().invoke(app, ["rates", "--by", "locale", "--corrected", "--format",
                                      "json", "--clickhouse", f"chdb://{path}"])  # fmt: skip
    rows = [r for r in json.loads(result.stdout)["rates"] if r["model_version"] == "v2"]
    true_rate = {
        loc: np.mean([truth[e.event_id] for e in batch.events
                      if e.attributes["locale"] == loc and e.model_version == "v2"])
        for loc, _ in LOCALES
    }  # fmt: skip
    print(f"{args.events} events, audit of {len(answers)} labels; version v2 by locale "
          f"(signal sensitivity {SENSITIVITY}, specificity {SPECIFICITY})")  # fmt: skip
    print(f"{'locale':>6} {'events':>6} {'raw':>7} {'corrected [95%]':>24} {'true':>7}")
    for r in sorted(rows, key=lambda r: r["values"][0]):
        loc = r["values"][0]
        print(f"{loc:>6} {r['events']:>6} {r['rate']:>7.1%} {r['corrected_rate']:>8.1%} "
              f"[{r['corrected_low']:>5.1%}, {r['corrected_high']:>5.1%}] "
              f"{true_rate[loc]:>7.1%}")  # fmt: skip
    de = next(r for r in rows if r["values"] == ["de"])
    others = [r for r in rows if r["values"] != ["de"]]
    raw_ratio = de["rate"] / max(r["rate"] for r in others)
    fixed_ratio = de["corrected_rate"] / max(r["corrected_rate"] for r in others)
    apart = de["corrected_low"] > max(r["corrected_high"] for r in others)
    print(f"de against the highest other locale: raw ×{raw_ratio:.2f}, corrected "
          f"×{fixed_ratio:.2f}; corrected intervals apart: {apart}")  # fmt: skip


if __name__ == "__main__":
    main()
