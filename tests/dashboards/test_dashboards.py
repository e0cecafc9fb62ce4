"""Dashboards as code: the macro renderer, every panel query against ClickHouse, the built
dashboard models, and the committed provisioning files."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import CHAT, IMAGE, NEW, now_minute, seed
from typer.testing import CliRunner

from dashboards import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    VARIABLES,
    MacroError,
    QueryContext,
    build_dashboards,
    render,
    view,
)
from dashboards.files import dashboard_document
from dashboards.queries import NamedQuery
from dashboards.run import run_query
from storage.client import connect
from storage.migrate import migrate
from telltale.cli_dashboards import dashboards_app, generated_files

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALL: dict[str, tuple[str, ...] | None] = {
    "app": None,
    "model": None,
    "version": None,
    "signal": None,
    "slice_key": None,
}


def ctx(**variables: tuple[str, ...] | None) -> QueryContext:
    return QueryContext(START, END, 300, {**ALL, **variables})


# --- the macro renderer ---------------------------------------------------------------------


def test_time_filter_binds_the_range_at_second_precision() -> None:
    bound = render("SELECT 1 FROM t WHERE $__timeFilter(ts)", ctx())
    assert bound.sql == (
        "SELECT 1 FROM t WHERE (ts >= toDateTime({tt_from:DateTime64(3, 'UTC')}) "
        "AND ts <= toDateTime({tt_to:DateTime64(3, 'UTC')}))"
    )
    assert bound.parameters == {"tt_from": START, "tt_to": END}


def test_time_filter_ms_from_to_and_interval_macros() -> None:
    bound = render(
        "SELECT $__timeInterval(ts) AS t, $__interval_s AS s, $__fromTime AS a, $__toTime_ms AS b"
        " FROM x WHERE $__timeFilter_ms(ts) AND $__fromTime_ms < $__toTime",
        ctx(),
    )
    assert (
        "toStartOfInterval(toDateTime(ts), toIntervalSecond({tt_interval_s:UInt32}))" in bound.sql
    )
    assert "{tt_interval_s:UInt32} AS s" in bound.sql
    assert "toDateTime({tt_from:DateTime64(3, 'UTC')}) AS a" in bound.sql
    assert "{tt_to:DateTime64(3, 'UTC')} AS b" in bound.sql
    assert "(ts >= {tt_from:DateTime64(3, 'UTC')} AND ts <= {tt_to:DateTime64(3, 'UTC')})" in (
        bound.sql
    )
    assert bound.parameters == {"tt_from": START, "tt_to": END, "tt_interval_s": 300}
    assert "$" not in bound.sql


def test_conditional_all_is_true_for_all_and_binds_selected_values() -> None:
    sql = "SELECT 1 WHERE $__conditionalAll(model IN (${model:singlequote}), $model)"
    assert render(sql, ctx()).sql == "SELECT 1 WHERE 1=1"
    assert render(sql, ctx()).parameters == {}
    bound = render(sql, ctx(model=("chat", "o'brien")))
    assert bound.sql == "SELECT 1 WHERE (model IN {var_model:Array(String)})"
    assert bound.parameters == {"var_model": ["chat", "o'brien"]}


def test_conditional_all_with_nested_parentheses_commas_and_quotes() -> None:
    sql = (
        "SELECT 1 WHERE $__conditionalAll(m IN (SELECT model FROM e WHERE app IN "
        "(${app:singlequote}) AND concat('a,', ')') != ''), ${app}) AND 2 > 1"
    )
    bound = render(sql, ctx(app=("chat",)))
    assert bound.sql == (
        "SELECT 1 WHERE (m IN (SELECT model FROM e WHERE app IN {var_app:Array(String)} "
        "AND concat('a,', ')') != '')) AND 2 > 1"
    )
    assert render(sql, ctx()).sql == "SELECT 1 WHERE 1=1 AND 2 > 1"


def test_a_query_without_macros_passes_unchanged() -> None:
    sql = "SELECT count() FROM events WHERE timestamp >= now() - INTERVAL 1 DAY"
    assert render(sql, ctx()).sql == sql
    assert render(sql, ctx()).parameters == {}


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT $__unixEpochFilter(ts)", "unsupported macro"),
        ("SELECT 1 WHERE model = '$model'", "unsupported macro"),
        ("SELECT ${__from:date}", "unsupported macro"),
        ("SELECT 1 WHERE m IN (${model:singlequote})", "'All' outside"),
        ("SELECT 1 WHERE m IN (${nope:singlequote})", "not defined"),
        ("SELECT $__conditionalAll(m IN (1), $nope)", "not defined"),
        ("SELECT $__conditionalAll(m IN (1))", "two arguments"),
        ("SELECT $__conditionalAll(m IN (1), 'x')", "variable as its second argument"),
        ("SELECT $__timeFilter(ts", "unbalanced"),
        ("SELECT $__timeFilter()", "column expression"),
    ],
)
def test_unsupported_or_malformed_sql_raises(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=re.escape(message)):
        render(sql, ctx())


def test_query_context_requires_aware_ordered_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        QueryContext(datetime(2026, 1, 1), END)
    with pytest.raises(ValueError, match="after start"):
        QueryContext(END, START)
    local = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert QueryContext(local, END).start == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


# --- every query against ClickHouse ---------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, datetime]]:
    """A migrated chDB database with the scenario of ``dashboard_seed``, for the module."""
    client = connect(f"chdb://{tmp_path_factory.mktemp('dash') / 'db'}")
    migrate(client)
    now = now_minute()
    seed(client, now)
    try:
        yield client, now
    finally:
        client.close()


def _dashboard_queries() -> list[tuple[str, NamedQuery]]:
    found: dict[str, tuple[str, NamedQuery]] = {}
    for dashboard in build_dashboards():
        v = view(dashboard)
        for panel in v.panels:
            if panel.query is not None:
                found[panel.query.name] = (f"{v.uid}: {panel.title}", panel.query)
        for query in v.annotations:
            found[query.name] = (f"{v.uid}: annotation", query)
    for name, (_, query) in VARIABLES.items():
        found[query.name] = (f"variable {name}", query)
    return sorted(found.values(), key=lambda item: item[1].name)


DASHBOARD_QUERIES = _dashboard_queries()
SELECTIONS = {
    "all": {},
    "chat-release": {
        "app": ("chat",),
        "model": (CHAT,),
        "version": (NEW,),
        "signal": ("stock_advice",),
    },
    "image": {"model": (IMAGE,), "signal": ("stock_watermark",)},
}


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
@pytest.mark.parametrize(
    ("where", "query"), DASHBOARD_QUERIES, ids=[q.name for _, q in DASHBOARD_QUERIES]
)
def test_every_dashboard_query_returns_its_columns_and_rows(
    seeded: tuple[Any, datetime], where: str, query: NamedQuery, selection: str
) -> None:
    client, now = seeded
    variables = {**ALL, **SELECTIONS[selection]}
    window = QueryContext(now - timedelta(hours=6), now + timedelta(minutes=1), 300, variables)
    frame = run_query(client, query, window)  # raises if the columns differ
    assert frame.columns == query.columns
    if selection == "image" and query.name.startswith("drift_"):
        assert frame.rows == (), f"{where}: drift windows exist only for {CHAT}"
    else:
        assert frame.rows, f"{where}: {query.name} returned no rows for {selection}"


def test_variable_filters_narrow_the_results(seeded: tuple[Any, datetime]) -> None:
    client, now = seeded
    window = (now - timedelta(hours=6), now + timedelta(minutes=1))
    every = run_query(client, VARIABLES["model"][1], QueryContext(*window, 300, ALL))
    chat_only = run_query(
        client, VARIABLES["model"][1], QueryContext(*window, 300, {**ALL, "app": ("chat",)})
    )
    assert sorted(every.column("model")) == [CHAT, IMAGE]
    assert chat_only.column("model") == [CHAT]


def test_release_changes_show_the_planted_jump(seeded: tuple[Any, datetime]) -> None:
    from dashboards.queries import RELEASE_CHANGES

    client, now = seeded
    frame = run_query(
        client, RELEASE_CHANGES, QueryContext(now - timedelta(hours=6), now, 300, ALL)
    )
    rows = [dict(zip(frame.columns, row)) for row in frame.rows]
    # The group safety-critical (of both signals) jumps exactly as stock_advice does.
    top = next(r for r in rows if r["signal"] == "stock_advice")
    assert rows.index(top) <= 1 and rows[0]["change"] == top["change"]
    assert (top["model"], top["release"]) == (CHAT, NEW)
    assert top["rate_before"] == pytest.approx(0.05, abs=0.02)
    assert top["rate_after"] == pytest.approx(0.20, abs=0.02)


def test_corrected_series_inverts_the_newest_audited_errors(seeded: tuple[Any, datetime]) -> None:
    from dashboards.queries import SIGNAL_CORRECTED_RATE

    client, now = seeded
    frame = run_query(client, SIGNAL_CORRECTED_RATE,
                      QueryContext(now - timedelta(hours=6), now, 3600, ALL))  # fmt: skip
    rows = [dict(zip(frame.columns, row)) for row in frame.rows]
    chat_new = [r for r in rows if r["series"] == f"stock_advice · {CHAT} {NEW}"]
    image = [r for r in rows if r["series"].startswith("stock_watermark")]
    assert chat_new and image
    for r in chat_new:  # the version's own estimate: Se 0.8, Sp 0.95
        expected = min(1.0, max(0.0, (r["raw_rate"] + 0.95 - 1) / (0.8 + 0.95 - 1)))
        assert r["corrected_rate"] == pytest.approx(expected)
    for r in image:  # pooled only: Se 0.7, Sp 0.9
        expected = min(1.0, max(0.0, (r["raw_rate"] + 0.9 - 1) / (0.7 + 0.9 - 1)))
        assert r["corrected_rate"] == pytest.approx(expected)
    for r in rows:
        assert r["corrected_low"] <= r["corrected_rate"] <= r["corrected_high"]


def test_a_quote_in_a_variable_value_is_data_not_sql(seeded: tuple[Any, datetime]) -> None:
    client, now = seeded
    hostile = ("x') OR 1=1 --", "o'brien")
    frame = run_query(
        client,
        VARIABLES["model"][1],
        QueryContext(now - timedelta(hours=6), now, 300, {**ALL, "app": hostile}),
    )
    assert frame.rows == ()


def test_share_scored_is_one_when_every_event_is_scored_and_falls_with_sampling(
    seeded: tuple[Any, datetime],
) -> None:
    from dashboards.queries import SHARE_SCORED
    from storage.rows import EventRow, ScoreRow, WriteBatch
    from storage.writer import ClickHouseWriter

    client, now = seeded
    window = QueryContext(now - timedelta(hours=6), now + timedelta(minutes=1), 300, ALL)
    assert set(run_query(client, SHARE_SCORED, window).column("share_scored")) == {1.0}
    # a sampled minute a month back: 40 events, 10 scored by one signal, 4 of them by another
    # too (the last test on the seeded database: the release query reads every minute)
    at = now - timedelta(days=30)
    batch = WriteBatch()
    for i in range(40):
        batch.events.append(EventRow(f"sampled-{i}", at, "sampled", "v1", app="a"))
        if i % 4 == 0:
            batch.scores.append(ScoreRow(f"sampled-{i}", "s1", 1, at, "sampled", "v1", 0.1, False))
        if i % 10 == 0:
            batch.scores.append(ScoreRow(f"sampled-{i}", "s2", 1, at, "sampled", "v1", 0.9, True))
    ClickHouseWriter(client).write(batch)
    month = QueryContext(at - timedelta(minutes=5), at + timedelta(minutes=5), 300, ALL)
    frame = run_query(client, SHARE_SCORED, month)
    assert frame.column("model") == ["sampled"] and frame.column("share_scored") == [0.25]


# --- the built dashboards -------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return [dashboard_document(d) for d in build_dashboards()]


def test_four_dashboards_with_unique_uids(documents: list[dict[str, Any]]) -> None:
    uids = [d["uid"] for d in documents]
    assert uids == ["telltale-overview", "telltale-signal", "telltale-drift", "telltale-pipeline"]
    assert all("telltale" in d["tags"] for d in documents)


def test_every_panel_queries_the_clickhouse_datasource_by_uid(
    documents: list[dict[str, Any]],
) -> None:
    for document in documents:
        for panel in document["panels"]:
            if panel["type"] == "text":
                continue
            assert panel["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
            (target,) = panel["targets"]
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["editorType"] == "sql"
            assert target["format"] == (0 if panel["type"] == "timeseries" else 1)
            assert target["rawSql"].strip().upper().startswith(("SELECT", "WITH"))


def test_template_variables_are_clickhouse_queries(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        variables = {v["name"]: v for v in document["templating"]["list"]}
        assert set(variables) == {"app", "model", "version", "signal", "slice_key"}
        for name, variable in variables.items():
            assert variable["type"] == "query"
            assert variable["datasource"]["uid"] == DATASOURCE_UID
            assert variable["query"]["rawSql"] == VARIABLES[name][1].sql
            assert variable["multi"] and variable["includeAll"]


def test_every_variable_used_in_sql_is_declared(documents: list[dict[str, Any]]) -> None:
    used = re.compile(r"\$\{?([a-z][a-z_]*)")
    for document in documents:
        declared = {v["name"] for v in document["templating"]["list"]}
        texts = [t["rawSql"] for p in document["panels"] for t in p.get("targets", [])]
        texts += [v["query"]["rawSql"] for v in document["templating"]["list"]]
        texts += [a["target"]["rawSql"] for a in document["annotations"]["list"]]
        for text in texts:
            assert set(used.findall(text)) <= declared, text


def test_release_annotations_come_from_the_releases_table(
    documents: list[dict[str, Any]],
) -> None:
    for document in documents:
        (annotation,) = document["annotations"]["list"]
        assert annotation["datasource"]["uid"] == DATASOURCE_UID
        assert "FROM releases" in annotation["target"]["rawSql"]


def test_required_panels_are_present(documents: list[dict[str, Any]]) -> None:
    titles = {d["uid"]: [p["title"] for p in d["panels"]] for d in documents}
    assert "Open detections" in titles["telltale-overview"]
    assert "Signals that changed most since the last release" in titles["telltale-overview"]
    assert {"Score distribution", "Threshold", "Recent flagged events"} <= set(
        titles["telltale-signal"]
    )
    assert "Events per second" in titles["telltale-pipeline"]


# --- provisioning files ---------------------------------------------------------------------


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    from dashboards.settings import GrafanaConfig

    for key in list(os.environ):
        if key.startswith("TELLTALE_GRAFANA_"):
            monkeypatch.delenv(key)
    return GrafanaConfig()


def test_committed_provisioning_files_match_the_code(default_settings: Any) -> None:
    files = generated_files(REPO, default_settings)
    stale = [
        str(path.relative_to(REPO))
        for path, content in files.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != content
    ]
    assert not stale, f"run `telltale dashboards build`: stale {stale}"
    on_disk = {p.name for p in (REPO / "dashboards" / "generated").glob("*.json")}
    assert on_disk == {p.name for p in files if p.suffix == ".json"}


def test_generated_dashboard_files_are_grafana_json(default_settings: Any) -> None:
    files = generated_files(REPO, default_settings)
    for path, content in files.items():
        if path.suffix == ".json":
            document = json.loads(content)
            assert document["uid"] == path.stem and document["panels"]


def test_build_writes_then_check_detects_drift(
    tmp_path: Path, default_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(dashboards_app, ["build", "--root", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)["written"]
    assert len(written) == 7  # 4 dashboards, the data source, Grafana and Prometheus rules
    assert (
        runner.invoke(dashboards_app, ["build", "--root", str(tmp_path), "--check"]).exit_code == 0
    )

    target = tmp_path / "dashboards" / "generated" / "telltale-overview.json"
    target.write_text(target.read_text().replace("Overview", "Overveiw"))
    (tmp_path / "dashboards" / "generated" / "old.json").write_text("{}")
    check = runner.invoke(
        dashboards_app, ["build", "--root", str(tmp_path), "--check", "--format", "json"]
    )
    assert check.exit_code == 1
    assert sorted(Path(p).name for p in json.loads(check.stdout)["stale"]) == [
        "old.json",
        "telltale-overview.json",
    ]
    assert runner.invoke(dashboards_app, ["build", "--root", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "dashboards" / "generated" / "old.json").exists()
