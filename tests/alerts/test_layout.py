"""The alerts package's layout: one name per detector, one table of tracks, no import circle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grimp

from alerts import MonitorConfig
from alerts.detectors import PromptDriftDetector, ReleaseSpikeDetector, SeasonalCusum
from alerts.tracks import (
    DEGRADATION,
    PROMPT_DRIFT,
    RELEASE_SPIKE,
    TRACKS,
    DetectionBook,
    DetectionEngine,
    MemoryStore,
    Span,
    Track,
    TrackSetup,
)

PACKAGES = ("signals", "streams", "storage", "alerts", "dashboards", "telltale")
WITHOUT_CIRCLES = PACKAGES


def test_each_detector_has_one_name_from_math_to_track_to_settings() -> None:
    """The stored detector name is the detector's, its track's, its settings section's and the
    prefix of its settings fields."""
    settings = MonitorConfig()
    setup = TrackSetup(client=None, settings=settings, store=MemoryStore())  # type: ignore[arg-type]
    tracks = [build(setup) for build in TRACKS]
    names = [t.name for t in tracks]
    assert names == [RELEASE_SPIKE, DEGRADATION, PROMPT_DRIFT]
    assert names == ["release_spike", "degradation", "prompt_drift"]  # the stored strings
    detectors = (ReleaseSpikeDetector(), SeasonalCusum(), PromptDriftDetector())
    assert [d.name for d in detectors] == names
    for track in tracks:
        assert isinstance(track, Track)
        assert type(track).__module__ == f"alerts.tracks.{track.name}"
        section = getattr(settings, track.name)
        assert type(section).__name__.lower() == track.name.replace("_", "") + "config"
        assert any(field.startswith(track.name + "_") for field in MonitorConfig.model_fields)
    for detector in detectors:
        assert type(detector).__module__ == f"alerts.detectors.{detector.name}"


class _Counting:
    """A track added without touching the engine: it counts the minutes it is handed."""

    name = "counting"

    def __init__(self, setup: TrackSetup) -> None:
        self.minutes = 0

    @property
    def series(self) -> int:
        return 1

    def advance(self, span: Span) -> None:
        self.minutes += int((span.until - span.start).total_seconds() // 60)
        span.report.count(self.name, "minutes", self.minutes)


def test_a_new_track_runs_from_the_table_alone(ch: Any) -> None:
    store = MemoryStore()
    start = datetime(2026, 11, 2, tzinfo=UTC)
    engine = DetectionEngine(
        ch, MonitorConfig(), DetectionBook(store), store, start=start,
        tracks=(*TRACKS, _Counting),
    )  # fmt: skip
    report = engine.advance(start.replace(hour=1), [])
    assert report.tracks["counting"] == {"minutes": 60, "series": 1}
    assert set(report.tracks) == {RELEASE_SPIKE, DEGRADATION, PROMPT_DRIFT, "counting"}
    assert report.as_dict()["tracks"]["counting"]["minutes"] == 60


def test_no_import_circle() -> None:
    """Strongly connected components of more than one module within a package, counting the
    imports made only for type checking too (grimp reads those)."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    circles = []
    for package in WITHOUT_CIRCLES:
        modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
        circles += _circles(graph, modules)
    assert circles == []


def _circles(graph: Any, modules: set[str]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v) & modules:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found
