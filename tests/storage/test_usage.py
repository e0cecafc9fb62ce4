"""Tokens and cost: the contract's ``usage``, ``usage_1m``, the price table, ``rates --usage``,
the Overview's panels, and the OTLP log of the ingest tests priced per model version."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from otlp_spans import details_logs, genai_batch, png_bytes, to_json, to_proto
from typer.testing import CliRunner

from signals.live import LiveSignals
from signals.open_clip_embedder import OpenClipEmbedder
from storage import PriceTable, usage_by_version
from storage.rows import EventRow, WriteBatch
from storage.writer import ClickHouseWriter
from streams.columnar import split_batch
from streams.errors import InvalidEvent
from streams.events import MAX_TOKENS, decode_event, encode_event, validate_event
from streams.otlp import decode_otlp
from streams.pipeline import Pipeline
from telltale.cli import app
from telltale.signal_store import ClickHouseSignalStore

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
BASE = {"event_id": "e1", "timestamp": "2026-10-05T09:00:00Z", "model": "chat",
        "model_version": "v1", "output": {"text": "hi"}}  # fmt: skip


# --- the event contract -----------------------------------------------------------------------


def test_usage_is_optional_and_round_trips() -> None:
    assert validate_event(BASE).usage.model_dump() == {"input_tokens": None, "output_tokens": None}
    event = validate_event({**BASE, "usage": {"input_tokens": 31, "output_tokens": 0}})
    assert (event.usage.input_tokens, event.usage.output_tokens) == (31, 0)
    assert decode_event(encode_event(event)) == event
    only_input = validate_event({**BASE, "usage": {"input_tokens": MAX_TOKENS}})
    assert only_input.usage.output_tokens is None
    assert b"usage" not in encode_event(validate_event(BASE))  # absent stays absent on the wire


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ({"input_tokens": -1}, "usage.input_tokens: Input should be greater than or equal to 0"),
        ({"output_tokens": 7.0}, "usage.output_tokens: Input should be a valid integer"),
        ({"output_tokens": 7.5}, "usage.output_tokens: Input should be a valid integer"),
        ({"input_tokens": True}, "usage.input_tokens: Input should be a valid integer"),
        ({"input_tokens": "12"}, "usage.input_tokens: Input should be a valid integer"),
        ({"input_tokens": MAX_TOKENS + 1}, "usage.input_tokens: Input should be less than or"),
        ({"total_tokens": 9}, "usage.total_tokens: Extra inputs are not permitted"),
        (12, "usage: Input should be a valid dictionary"),
    ],
    ids=["negative", "integral-float", "float", "bool", "text", "too-large", "unknown", "scalar"],
)
def test_bad_token_counts_are_refused_with_the_reason(usage: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent, match="invalid event") as caught:
        validate_event({**BASE, "usage": usage})
    assert reason in str(caught.value)
    # the same payload as JSON bytes (the Kafka path) is refused the same way
    with pytest.raises(InvalidEvent) as again:
        decode_event(json.dumps({**BASE, "usage": usage}).encode())
    assert reason in str(again.value)


# --- the columnar replay ----------------------------------------------------------------------


def _batch(usage: pa.Array, dim: int, embedder_id: str) -> pa.RecordBatch:
    n = len(usage)
    return pa.RecordBatch.from_pydict({
        "event_id": [f"c{i}" for i in range(n)],
        "timestamp": pa.array([T0] * n, pa.timestamp("ms", tz="UTC")),
        "model": ["chat"] * n, "model_version": ["v1"] * n,
        "output": [{"text": "hi"}] * n,
        "usage": usage,
        "embeddings": [{"embedder_id": embedder_id, "output.text": [0.0] * dim}] * n,
    })  # fmt: skip


def test_columnar_tokens_are_checked_like_the_contract(tiny_embedder: OpenClipEmbedder) -> None:
    kind = pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64())])
    usage = pa.array([{"input_tokens": 5, "output_tokens": None}, None,
                      {"input_tokens": -1, "output_tokens": 3},
                      {"input_tokens": 1, "output_tokens": MAX_TOKENS + 1},
                      {"input_tokens": MAX_TOKENS, "output_tokens": 0}], kind)  # fmt: skip
    batch = _batch(usage, tiny_embedder.dim, tiny_embedder.id)
    columns, slow, _ = split_batch(batch, tiny_embedder.id, tiny_embedder.dim)
    assert columns is not None and slow == [2, 3]  # the per-event path rejects them, with why
    events = columns.events
    assert events.schema.field("input_tokens").type == pa.uint32()
    assert events.column("input_tokens").to_pylist() == [5, None, MAX_TOKENS]
    assert events.column("output_tokens").to_pylist() == [None, None, 0]
    for row in slow:  # the per-event path rejects the rows handed to it, with the reason
        payload = batch.slice(row, 1).to_pylist()[0]
        payload.pop("embeddings")
        with pytest.raises(InvalidEvent, match="usage"):
            validate_event(payload)


@pytest.mark.parametrize(
    "kind",
    [pa.struct([("input_tokens", pa.float64())]), pa.struct([("input_tokens", pa.bool_())]),
     pa.struct([("input_tokens", pa.int64()), ("total_tokens", pa.int64())])],
    ids=["floats", "booleans", "unknown-child"],
)  # fmt: skip
def test_token_columns_the_fast_path_does_not_read_go_the_per_event_way(
    tiny_embedder: OpenClipEmbedder, kind: pa.DataType
) -> None:
    values = [dict.fromkeys(kind.names, kind.field(0).type.to_pandas_dtype()(1))]
    batch = _batch(pa.array(values, kind), tiny_embedder.dim, tiny_embedder.id)
    columns, slow, _ = split_batch(batch, tiny_embedder.id, tiny_embedder.dim)
    assert (columns, slow) == (None, [0])


# --- storage: usage_1m and prices -------------------------------------------------------------


def _write(ch: Any, rows: list[tuple[str, datetime, str, str, int | None, int | None]]) -> None:
    batch = WriteBatch()
    for event_id, at, model, version, tokens_in, tokens_out in rows:
        batch.events.append(EventRow(event_id, at, model, version, app="shop", output_text="x",
                                     input_tokens=tokens_in, output_tokens=tokens_out))  # fmt: skip
    ClickHouseWriter(ch).write(batch)


PRICES = PriceTable.parse(json.dumps([
    {"model": "chat", "input_per_1m": 2.0, "output_per_1m": 8.0},
    {"model": "chat", "model_version": "v2", "input_per_1m": 1.0, "output_per_1m": 4.0},
]))  # fmt: skip


def test_tokens_and_cost_per_version_priced_when_read(ch: Any) -> None:
    _write(ch, [
        ("a1", T0, "chat", "v1", 1000, 200),
        ("a2", T0 + timedelta(seconds=30), "chat", "v1", 3000, 600),
        ("a3", T0 + timedelta(minutes=1), "chat", "v1", None, None),  # reported no usage
        ("b1", T0 + timedelta(minutes=1), "chat", "v2", 500, None),  # input only
        ("b2", T0 + timedelta(minutes=2), "chat", "v2", 700, 100),
        ("c1", T0, "embed", "e1", 4000, None),  # no price for this model
    ])  # fmt: skip
    rows = {(r.model, r.model_version): r for r in usage_by_version(ch, prices=PRICES)}
    v1, v2, embed = rows[("chat", "v1")], rows[("chat", "v2")], rows[("embed", "e1")]
    assert (v1.events, v1.events_with_usage, v1.input_tokens, v1.output_tokens) == (3, 2, 4000, 800)
    assert v1.cost == pytest.approx((4000 * 2.0 + 800 * 8.0) / 1e6)
    assert v1.cost_per_event == pytest.approx(v1.cost / 2)
    v2_counts = (v2.input_tokens, v2.output_tokens, v2.input_events, v2.output_events)
    assert v2_counts == (1200, 100, 2, 1)
    assert v2.cost == pytest.approx((1200 * 1.0 + 100 * 4.0) / 1e6)  # the version's own price
    assert v2.as_dict()["output_tokens_per_event"] == 100  # per event that reported output
    assert embed.price is None and embed.cost is None and embed.input_tokens == 4000
    # a changed price re-prices the history: nothing priced was stored
    cheaper = PriceTable.parse("chat=1:1")
    again = {(r.model, r.model_version): r for r in usage_by_version(ch, prices=cheaper)}
    assert again[("chat", "v2")].cost == pytest.approx(1300 / 1e6)
    # per minute, and filtered
    minutes = usage_by_version(ch, prices=PRICES, model="chat", bucket="minute",
                               since=T0 + timedelta(minutes=1))  # fmt: skip
    assert [(r.model_version, r.bucket, r.input_tokens) for r in minutes] == [
        ("v1", T0 + timedelta(minutes=1), 0), ("v2", T0 + timedelta(minutes=1), 500),
        ("v2", T0 + timedelta(minutes=2), 700)]  # fmt: skip


def test_a_duplicate_waiting_for_its_merge_is_not_charged_twice(ch: Any) -> None:
    rows = [(f"d{i}", T0 + timedelta(seconds=i), "chat", "v1", 100, 10) for i in range(4)]
    _write(ch, rows)
    ch.insert("events", [["d0", T0, "chat", "v1", 100, 10]],
              column_names=["event_id", "timestamp", "model", "model_version", "input_tokens",
                            "output_tokens"])  # fmt: skip
    assert ch.query("SELECT count() FROM events").result_rows[0][0] == 5
    (row,) = usage_by_version(ch, prices=PRICES)
    assert (row.events_with_usage, row.input_tokens, row.output_tokens) == (4, 400, 40)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("chat=1", "not model=input_per_1m:output_per_1m"), ("chat=-1:2", "greater than or equal"),
     ("chat=1:2,chat=3:4", "two prices for chat"), ("ch'at=1:2", "should match pattern"),
     ("a$b=1:2", "should match pattern"), ("[{bad", "not valid JSON"),
     ('[{"model": "m", "input_per_1m": 1}]', "output_per_1m")],
)  # fmt: skip
def test_bad_price_tables_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        PriceTable.parse(text)
    assert problem in str(caught.value)


def test_price_lookup_prefers_the_version() -> None:
    assert PRICES.lookup("chat", "v2").input_per_1m == 1.0  # type: ignore[union-attr]
    assert PRICES.lookup("chat", "v9").input_per_1m == 2.0  # type: ignore[union-attr]
    assert PRICES.lookup("other", "v1") is None
    assert PriceTable.parse("").prices == ()
    assert PriceTable.parse(" a = 1 : 2 ").prices[0].model == "a"


# --- rates --usage and the dashboards -----------------------------------------------------------


def test_rates_usage_prints_tokens_and_cost(
    ch: Any, chdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(ch, [("a1", T0, "chat", "v1", 1000, 200), ("b1", T0, "chat", "v2", 500, 50),
                ("c1", T0, "embed", "e1", 4000, None)])  # fmt: skip
    ch.close()  # the CLI opens the same chDB path
    monkeypatch.setenv("TELLTALE_USAGE_PRICES", "chat=2:8")
    runner = CliRunner()
    dsn = ["--clickhouse", f"chdb://{chdb_path}"]
    result = runner.invoke(app, ["rates", "--usage", "--format", "json", *dsn])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    got = {(d["model"], d["model_version"]): d for d in doc["usage"]}
    assert got[("chat", "v1")]["cost"] == pytest.approx(0.0036)
    assert got[("chat", "v2")]["input_tokens"] == 500 and got[("embed", "e1")]["cost"] is None
    assert doc["priced"] == ["chat v1", "chat v2"]
    text = runner.invoke(app, ["rates", "--usage", *dsn])
    assert text.exit_code == 0, text.output
    assert "0.003600" in text.stdout and "2 / 8" in text.stdout
    assert "set TELLTALE_USAGE_PRICES" in text.stdout  # embed has no price
    hourly = runner.invoke(app, ["rates", "--usage", "--bucket", "hour", "--format", "json", *dsn])
    assert json.loads(hourly.stdout)["usage"][0]["bucket"] == T0.isoformat()
    mixed = runner.invoke(app, ["rates", "--usage", "--by", "locale", *dsn])
    assert mixed.exit_code != 0
    monkeypatch.setenv("TELLTALE_USAGE_PRICES", "chat=2")
    bad = runner.invoke(app, ["rates", "--usage", *dsn])
    assert bad.exit_code != 0 and "TELLTALE_USAGE_PRICES" in " ".join(bad.output.split())


def test_dashboard_panels_price_tokens_as_the_cli_does(ch: Any) -> None:
    from dashboards import QueryContext, dashboard_document, render
    from dashboards.definitions import build_dashboards
    from dashboards.queries.usage import TOKENS_PER_EVENT, cost_per_minute
    from dashboards.queries.usage import usage_by_version as usage_panel

    _write(ch, [
        ("a1", T0, "chat", "v1", 1000, 200),
        ("a2", T0 + timedelta(minutes=1), "chat", "v1", 3000, 600),
        ("b1", T0, "chat", "v2", 500, None),
        ("b2", T0 + timedelta(minutes=2), "chat", "v2", 700, 100),
        ("c1", T0, "embed", "e1", 4000, None),
    ])  # fmt: skip
    ctx = QueryContext(T0 - timedelta(hours=1), T0 + timedelta(hours=1), 60,
                       {"app": None, "model": None, "version": None, "signal": None,
                        "slice_key": None})  # fmt: skip

    def run(sql: str) -> list[tuple[Any, ...]]:
        bound = render(sql, ctx)
        return list(ch.query(bound.sql, parameters=bound.parameters).result_rows)

    table = {(r[0], r[1]): r for r in run(usage_panel(PRICES).sql)}
    cli = {(r.model, r.model_version): r for r in usage_by_version(ch, prices=PRICES)}
    for key, row in cli.items():
        panel = table[key]
        assert (panel[2], panel[3], panel[4]) == (row.events_with_usage, row.input_tokens,
                                                  row.output_tokens), key  # fmt: skip
        assert panel[7] == (None if row.cost is None else pytest.approx(row.cost)), key
    per_minute = run(cost_per_minute(PRICES).sql)
    total = sum(r[2] for r in per_minute if r[1] == "chat v2")
    assert total == pytest.approx(cli[("chat", "v2")].cost)  # 1-minute buckets: sums to cost
    assert {r[2] for r in per_minute if r[1] == "embed e1"} == {None}  # unpriced: no line
    tokens = {(r[0], r[1]): r[2] for r in run(TOKENS_PER_EVENT.sql)}
    assert tokens[(T0 + timedelta(minutes=1), "chat v1 · output")] == 600
    assert (T0, "chat v2 · output") not in tokens  # no output reported then: no point
    overview = next(d for d in build_dashboards(0, PRICES) if d.uid == "telltale-overview")
    assert "model_version = 'v2', 4.0" in json.dumps(dashboard_document(overview))


# --- Must show: tokens and cost per version on the OTLP log of the ingest tests ----------------

MUST_SHOW_PRICES = PriceTable.parse(json.dumps([
    {"model": "gpt-4o", "input_per_1m": 2.5, "output_per_1m": 10.0},
    {"model": "gpt-4o-mini", "input_per_1m": 0.15, "output_per_1m": 0.6},
    {"model": "gpt-3.5-turbo", "model_version": "gpt-3.5-turbo-0125", "input_per_1m": 0.5,
     "output_per_1m": 1.5},
    {"model": "gpt-4", "input_per_1m": 30.0, "output_per_1m": 60.0},
]))  # fmt: skip
"""Illustrative list prices (USD per 1M tokens) for the models of ``otlp_spans``; the Anthropic,
Llama, Mistral and image models are left unpriced on purpose."""


def test_otlp_ingest_log_tokens_and_cost_per_version(
    ch: Any, tiny_embedder: OpenClipEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export batches of ``test_ingest_integration`` (OTLP proto and JSON, every convention,
    a redelivered batch, the inference-details logs), decoded and stored by the worker's code
    path, then read back per model version and priced."""
    image = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    batch, json_batch = genai_batch(image_uri=image), genai_batch(image_uri=image, tag="-json")
    logs_proto, _, _ = details_logs()
    _, logs_json, _ = details_logs(tag="-2")
    records = [
        (to_proto(batch.spans), "spans"),
        (to_json(json_batch.spans), "spans"),
        (to_proto(batch.spans), "spans"),
        (logs_proto, "logs"),
        (logs_json, "logs"),
    ]
    live = LiveSignals(ClickHouseSignalStore(ch), tiny_embedder.id, refresh_s=3600)
    pipeline = Pipeline(tiny_embedder, live, ClickHouseWriter(ch))
    for raw, kind in records:
        decoded = decode_otlp(raw, kind)  # type: ignore[arg-type]
        assert decoded.invalid == []
        result = pipeline.process(decoded.events)
        assert result.rejected == []
    want = {}
    for b in (batch, json_batch):
        for expected in b.expected.values():
            key = (expected.model, expected.model_version)
            tokens = want.setdefault(key, [0, 0, 0])
            if expected.usage:
                tokens[0] += 1
                tokens[1] += expected.usage.get("input_tokens", 0)
                tokens[2] += expected.usage.get("output_tokens", 0)
    rows = usage_by_version(ch, prices=MUST_SHOW_PRICES)
    got = {(r.model, r.model_version): [r.events_with_usage, r.input_tokens, r.output_tokens]
           for r in rows}  # fmt: skip
    assert {k: v for k, v in got.items() if k in want} == want  # the redelivery counted once
    mini = next(r for r in rows if r.model == "gpt-4o-mini" and r.model_version == "2.3.0")
    assert mini.cost == pytest.approx((2 * 40 * 0.15 + 2 * 12 * 0.6) / 1e6)  # content-less spans
    with capsys.disabled():
        print("\ntokens and cost per model version, OTLP ingest log (USD per 1M tokens):")
        print(f"{'model':<20} {'version':<20} {'events':>6} {'w/usage':>7} {'in':>6} {'out':>5} "
              f"{'in/ev':>6} {'out/ev':>6} {'cost':>10} {'cost/ev':>10}")  # fmt: skip
        for r in rows:
            d = r.as_dict()

            def show(value: float | None, spec: str) -> str:
                return "-" if value is None else format(value, spec)

            print(f"{r.model:<20} {r.model_version:<20} {r.events:>6} {r.events_with_usage:>7} "
                  f"{r.input_tokens:>6} {r.output_tokens:>5} "
                  f"{show(d['input_tokens_per_event'], '.1f'):>6} "
                  f"{show(d['output_tokens_per_event'], '.1f'):>6} "
                  f"{show(r.cost, '.8f'):>10} {show(r.cost_per_event, '.8f'):>10}")  # fmt: skip
