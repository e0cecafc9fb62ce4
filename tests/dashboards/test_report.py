"""``telltale report``: the dashboards' panels from the same SQL, as one self-contained HTML
file, opened in headless Chromium (Debian packages ``chromium`` and ``chromium-driver``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from dashboard_seed import CHAT, now_minute, seed
from PIL import Image
from typer.testing import CliRunner

from dashboards import build_dashboards, view
from dashboards.svg import PALETTE
from storage.client import connect
from storage.migrate import migrate
from telltale.cli_dashboards import report

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = (
    "headless Chromium is required for the report screenshot test: "
    "apt-get update && apt-get install -y chromium chromium-driver"
)
VIEWS = [view(d) for d in build_dashboards()]
PANEL_TITLES = [p.title for v in VIEWS for p in v.panels]


def window() -> list[str]:
    """Six hours back, ending after the rows just seeded: ``$__timeFilter`` has second
    precision, as in Grafana, so ending at "now" could cut the newest second off."""
    now = now_minute()
    since, until = now - timedelta(hours=6), now + timedelta(minutes=2)
    return ["--since", since.isoformat(), "--until", until.isoformat()]


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    return app


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A seeded chDB path, closed again so the CLI can open it (one client per path)."""
    path = tmp_path_factory.mktemp("report") / "db"
    client = connect(f"chdb://{path}")
    migrate(client)
    seed(client, now_minute())
    client.close()
    yield f"chdb://{path}"


@pytest.fixture(scope="module")
def rendered(database: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("html") / "report.html"
    result = CliRunner().invoke(
        cli(),
        ["report", "--out", str(out), *window(), "--clickhouse", database, "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    return {"out": out, "summary": json.loads(result.stdout), "html": out.read_text()}


def test_every_panel_is_rendered_with_rows(rendered: dict[str, Any]) -> None:
    panels = rendered["summary"]["panels"]
    assert [p["panel"] for p in panels] == PANEL_TITLES
    empty = [p["panel"] for p in panels if p["kind"] != "text" and p["rows"] == 0]
    assert not empty, f"panels without data: {empty}"


def test_report_is_self_contained_and_escaped(rendered: dict[str, Any]) -> None:
    html = rendered["html"]
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert "@import" not in html and "url(" not in html
    kinds = [p["kind"] for p in rendered["summary"]["panels"]]
    charts = kinds.count("timeseries") + kinds.count("barchart")
    assert html.count("<svg") == charts
    assert "&lt;b&gt;should&lt;/b&gt;" in html and "<b>should</b>" not in html
    links = re.findall(r'href="([^"#][^"]*)"', html)
    assert links and all(link.startswith("https://images.example/") for link in links)
    assert "(inline image)" in html and "base64" not in html


def test_report_honours_the_variables(database: str, tmp_path: Path) -> None:
    out = tmp_path / "chat.html"
    result = CliRunner().invoke(
        cli(),
        [
            "report",
            "--out",
            str(out),
            "--model",
            CHAT,
            "--signal",
            "stock_advice",
            *window(),
            "--clickhouse",
            database,
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "model=chat-assistant" in html and "signal=stock_advice" in html
    assert "stock_watermark · image-gen" not in html


def test_report_rejects_an_empty_range(database: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli(),
        [
            "report",
            "--out",
            str(tmp_path / "x.html"),
            "--since",
            "2026-01-02T00:00:00Z",
            "--until",
            "2026-01-01T00:00:00Z",
            "--clickhouse",
            database,
        ],
    )
    assert result.exit_code != 0
    assert not (tmp_path / "x.html").exists()


def _chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_report_renders_in_headless_chromium(rendered: dict[str, Any], tmp_path: Path) -> None:
    binary = _chromium()
    url = rendered["out"].resolve().as_uri()

    dom = _headless(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for title in ["telltale report", *(v.title for v in VIEWS), *PANEL_TITLES]:
        assert title in dom.stdout, f"{title!r} missing from the rendered DOM"
    assert dom.stdout.count("<svg") >= 8

    shot = tmp_path / "report.png"
    run = _headless(
        binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", url
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    present = {f"#{r:02X}{g:02X}{b:02X}" for _, (r, g, b) in colours}
    drawn = [c for c in PALETTE if c.upper() in present]
    assert len(drawn) >= 3, f"chart colours missing from the screenshot: {drawn}"
    dark_header = sum(n for n, c in colours if c == (0x18, 0x1B, 0x1F))
    assert dark_header > 1280 * 40, "the report header was not painted"


def test_a_report_without_a_range_fits_the_data_and_reads_rates(tmp_path: Path) -> None:
    """Forty minutes of data at four events a minute: the default range is those forty
    minutes (not a day with the data in its last hour), and the buckets are the shortest that
    hold a median of 30 events per model version (15 minutes; 5 would hold 20)."""
    from storage.rows import EventRow, ScoreRow, WriteBatch
    from storage.writer import ClickHouseWriter

    first = now_minute() - timedelta(hours=3)
    batch = WriteBatch()
    for i in range(160):
        at = first + timedelta(seconds=15 * i)
        batch.events.append(EventRow(f"e{i}", at, CHAT, "v1", output_text="x"))
        batch.scores.append(ScoreRow(f"e{i}", "stock_advice", 1, at, CHAT, "v1",
                                     0.9 if i % 10 == 0 else 0.1, i % 10 == 0))  # fmt: skip
    client = connect(f"chdb://{tmp_path / 'db'}")
    migrate(client)
    ClickHouseWriter(client).write(batch)
    client.close()
    out = tmp_path / "report.html"
    dsn = f"chdb://{tmp_path / 'db'}"
    result = CliRunner().invoke(
        cli(), ["report", "--out", str(out), "--clickhouse", dsn, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    end = first + timedelta(minutes=40)
    assert f"{first:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" in html
    assert "buckets of at least 15m" in html
    panels = {p["panel"]: p for p in json.loads(result.stdout)["panels"]}
    rate = panels["Failure rate by signal and model version"]
    assert rate["interval_s"] == 900 and 3 <= rate["rows"] <= 4  # not 40 one-minute spikes


_OVERFLOW_PROBE = """<pre id="overflow"></pre><script>
document.getElementById('overflow').textContent = JSON.stringify(
  [...document.querySelectorAll('.panel .table')].map(t => {
    const panel = t.closest('.panel');
    return [panel.querySelector('h3').textContent, t.scrollWidth - t.clientWidth,
            panel.scrollWidth - panel.clientWidth];
  }));
</script>"""


def test_tables_wrap_into_their_panels_in_headless_chromium(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    """At 1280 pixels tables wrap into their panels: names and ids break after ``_``, ``/``
    and ``-`` (before, each table kept its widest line: 160 to 530 pixels wider than its panel,
    scrolled sideways). A table that still cannot fit scrolls inside its panel, never past it."""
    probe = tmp_path / "probe.html"
    probe.write_text(rendered["html"].replace("</body>", f"{_OVERFLOW_PROBE}</body>"))
    dom = _headless(_chromium(), tmp_path / "profile", "--window-size=1280,2000",
                    "--dump-dom", probe.resolve().as_uri())  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="overflow">([^<]*)</pre>', dom.stdout)
    assert found, dom.stdout[-2000:]
    widths = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(widths) >= 4
    assert [(title, past) for title, _, past in widths if past > 1] == []
    wider = {title: extra for title, extra, _ in widths if extra > 1}
    # Ten columns of whole words (statistic, threshold, degradation) do not fit a half-width
    # panel unless words break anywhere: that one table scrolls, by less than before (527 px).
    assert set(wider) <= {"Open detections"} and wider.get("Open detections", 0) < 200, wider
