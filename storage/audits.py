"""Audit samples and audit labels in ClickHouse (migration 15).

``audit_samples`` holds every drawn event of every audit with its stratum, the stratum's size and
draw count, and so its inclusion probability; ``audit_labels`` the answers, keyed by signal,
signal version, event and labeller, so re-importing the same answers changes nothing. The
``signals.audit`` module owns what the numbers mean; this module only stores and counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from storage._sql import add_equal_filters
from storage._time import as_utc

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = [
    "LABEL_SOURCES",
    "AuditLabel",
    "AuditSample",
    "ErrorEstimateRow",
    "StratumLabels",
    "audit_last_labelled",
    "audit_population",
    "audit_stratum_labels",
    "draw_audit",
    "drawn_versions",
    "judge_agreement",
    "record_error_estimates",
    "store_audit_labels",
]

LABEL_SOURCES = ("audit", "label", "feedback", "judge")
"""Where an audit label came from: an imported answer file, ``signals label``, user feedback,
or the LLM judge (``judge:MODEL`` as labeller)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuditSample:
    """One drawn event: its stratum and the stratum's size and draw count."""

    audit_id: str
    signal: str
    signal_version: int
    event_id: str
    model_version: str
    band: str
    stratum_size: int
    stratum_drawn: int
    score: float
    flagged: bool

    @property
    def inclusion_probability(self) -> float:
        return self.stratum_drawn / self.stratum_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id, "signal": self.signal,
            "signal_version": self.signal_version, "event_id": self.event_id,
            "model_version": self.model_version, "stratum": self.band,
            "stratum_size": self.stratum_size, "stratum_drawn": self.stratum_drawn,
            "inclusion_probability": self.inclusion_probability, "score": self.score,
            "flagged": self.flagged,
        }  # fmt: skip


@dataclass(frozen=True)
class AuditLabel:
    signal: str
    signal_version: int
    event_id: str
    label: int  # 1: the failure is there
    labeller: str
    source: str  # one of LABEL_SOURCES

    def key(self) -> tuple[str, int, str, str]:
        return (self.signal, self.signal_version, self.event_id, self.labeller)


@dataclass(frozen=True)
class StratumLabels:
    """Per audit and stratum: size, labelled events and failures among them."""

    audit_id: str
    model_version: str
    band: str
    size: int
    labelled: int
    failures: int


def _window(where: list[str], params: dict[str, Any], since: datetime | None,
            until: datetime | None) -> None:  # fmt: skip
    where.append("timestamp >= {since:DateTime64(3, 'UTC')}")
    where.append("timestamp < {until:DateTime64(3, 'UTC')}")
    params["since"] = as_utc(since or _EPOCH)
    params["until"] = as_utc(until or _FAR)


def audit_population(
    client: Client,
    signal: str,
    version: int,
    near_quantile: float,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[float, dict[tuple[str, str], int]]:
    """The near-band cut (``near_quantile`` of the unflagged scores) and the size of each
    (product version, band) stratum among the stored scores of one signal version."""
    where = ["signal = {signal:String}", "signal_version = {version:UInt32}"]
    params: dict[str, Any] = {"signal": signal, "version": version, "q": near_quantile}
    add_equal_filters(where, params, model=model)
    _window(where, params, since, until)
    cond = " AND ".join(where)
    cut_rows = client.query(
        f"SELECT quantileExactIf({{q:Float64}})(score, NOT flagged), countIf(NOT flagged) "  # noqa: S608
        f"FROM signal_scores FINAL WHERE {cond}",
        parameters=params,
    ).result_rows
    near_cut = float(cut_rows[0][0]) if cut_rows and int(cut_rows[0][1]) else float("inf")
    params["cut"] = near_cut if near_cut != float("inf") else 3.0e38
    rows = client.query(
        f"""
        SELECT model_version,
               multiIf(flagged, 'flagged', score >= {{cut:Float64}}, 'near', 'clear') AS band,
               count()
        FROM signal_scores FINAL WHERE {cond}
        GROUP BY model_version, band
        """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
        parameters=params,
    ).result_rows
    return near_cut, {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def draw_audit(
    client: Client,
    audit_id: str,
    signal: str,
    version: int,
    near_cut: float,
    take: Mapping[tuple[str, str], int],
    sizes: Mapping[tuple[str, str], int],
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditSample]:
    """Draw ``take[stratum]`` events at random from each stratum and store the draw.

    The order is a hash of the event id salted with the audit id: a simple random sample
    per stratum that the same audit id reproduces.
    """
    drawn: list[AuditSample] = []
    for (model_version, band), n in sorted(take.items()):
        where = ["signal = {signal:String}", "signal_version = {version:UInt32}",
                 "model_version = {mv:String}"]  # fmt: skip
        params: dict[str, Any] = {
            "signal": signal, "version": version, "mv": model_version, "n": n,
            "salt": audit_id, "cut": near_cut if near_cut != float("inf") else 3.0e38,
            "band": band,
        }  # fmt: skip
        add_equal_filters(where, params, model=model)
        _window(where, params, since, until)
        rows = client.query(
            f"""
            SELECT event_id, score, flagged FROM signal_scores FINAL
            WHERE {" AND ".join(where)}
              AND multiIf(flagged, 'flagged', score >= {{cut:Float64}}, 'near', 'clear')
                  = {{band:String}}
            ORDER BY cityHash64(event_id, {{salt:String}}), event_id
            LIMIT {{n:UInt32}}
            """,  # noqa: S608 - only fixed fragments are formatted; values are bound parameters
            parameters=params,
        ).result_rows
        size = sizes[(model_version, band)]
        drawn += [
            AuditSample(audit_id, signal, version, str(r[0]), model_version, band, size,
                        len(rows), float(r[1]), bool(r[2]))
            for r in rows
        ]  # fmt: skip
    if drawn:
        client.insert(
            "audit_samples",
            [[s.audit_id, s.signal, s.signal_version, s.event_id, s.model_version, s.band,
              s.stratum_size, s.stratum_drawn, s.score, int(s.flagged)] for s in drawn],
            column_names=["audit_id", "signal", "signal_version", "event_id", "model_version",
                          "band", "stratum_size", "stratum_drawn", "score", "flagged"],
        )  # fmt: skip
    return drawn


def drawn_versions(client: Client, signal: str, event_ids: Sequence[str]) -> dict[str, set[int]]:
    """For each of ``event_ids`` drawn in an audit of ``signal``, the signal versions audited."""
    rows = client.query(
        "SELECT DISTINCT event_id, signal_version FROM audit_samples "
        "WHERE signal = {signal:String} AND event_id IN {ids:Array(String)}",
        parameters={"signal": signal, "ids": list(event_ids)},
    ).result_rows
    found: dict[str, set[int]] = {}
    for event_id, version in rows:
        found.setdefault(str(event_id), set()).add(int(version))
    return found


def store_audit_labels(client: Client, labels: Sequence[AuditLabel]) -> tuple[int, int, int]:
    """Store labels; (new, unchanged, changed). An identical label already stored is not
    written again, so re-importing the same answers changes nothing."""
    if not labels:
        return 0, 0, 0
    stored: dict[tuple[str, int, str, str], int] = {}
    for signal in sorted({lab.signal for lab in labels}):
        rows = client.query(
            "SELECT signal, signal_version, event_id, labeller, label FROM audit_labels FINAL "
            "WHERE signal = {signal:String} AND event_id IN {ids:Array(String)}",
            parameters={"signal": signal,
                        "ids": sorted({lab.event_id for lab in labels if lab.signal == signal})},
        ).result_rows  # fmt: skip
        stored |= {(str(r[0]), int(r[1]), str(r[2]), str(r[3])): int(r[4]) for r in rows}
    latest = {lab.key(): lab for lab in labels}  # the last answer in a file wins
    fresh = [lab for key, lab in latest.items() if stored.get(key) != lab.label]
    changed = sum(1 for lab in fresh if lab.key() in stored)
    if fresh:
        client.insert(
            "audit_labels",
            [[lab.signal, lab.signal_version, lab.event_id, lab.label, lab.labeller, lab.source]
             for lab in fresh],
            column_names=["signal", "signal_version", "event_id", "label", "labeller", "source"],
        )  # fmt: skip
    return len(fresh) - changed, len(latest) - len(fresh), changed


def audit_stratum_labels(
    client: Client, signal: str, version: int, *, include_judge: bool = False
) -> list[StratumLabels]:
    """Per audit and stratum of one signal version: size, labelled events, failures.

    One label per event: a person's before the judge's (the judge's only with
    ``include_judge``), the latest among several.
    """
    rows = client.query(
        """
        WITH chosen AS (
            SELECT event_id,
                   argMax(label, (source != 'judge', labelled_at)) AS label
            FROM audit_labels FINAL
            WHERE signal = {signal:String} AND signal_version = {version:UInt32}
              AND (source != 'judge' OR {judge:Bool})
            GROUP BY event_id
        )
        SELECT s.audit_id, s.model_version, s.band, any(s.stratum_size),
               countIf(c.event_id != ''), countIf(c.event_id != '' AND c.label = 1)
        FROM (SELECT * FROM audit_samples FINAL
              WHERE signal = {signal:String} AND signal_version = {version:UInt32}) AS s
        LEFT JOIN chosen AS c ON c.event_id = s.event_id
        GROUP BY s.audit_id, s.model_version, s.band
        ORDER BY s.audit_id, s.model_version, s.band
        """,
        parameters={"signal": signal, "version": version, "judge": include_judge},
        settings={"join_use_nulls": 0},
    ).result_rows
    return [
        StratumLabels(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in rows
    ]


def audit_last_labelled(client: Client) -> dict[str, datetime]:
    """Per signal, when its newest audit label (of any source) was stored."""
    rows = client.query(
        "SELECT signal, max(labelled_at) FROM audit_labels GROUP BY signal"
    ).result_rows
    return {str(r[0]): as_utc(r[1]) for r in rows}


def judge_agreement(client: Client, signal: str) -> tuple[int, int]:
    """Over events of ``signal`` labelled by both a person and the judge: (pairs, agreeing)."""
    rows = client.query(
        """
        SELECT count(), countIf(h = j) FROM (
            SELECT signal_version, event_id,
                   argMaxIf(label, labelled_at, source != 'judge') AS h,
                   argMaxIf(label, labelled_at, source = 'judge') AS j,
                   countIf(source != 'judge') AS nh, countIf(source = 'judge') AS nj
            FROM audit_labels FINAL WHERE signal = {signal:String}
            GROUP BY signal_version, event_id
        ) WHERE nh > 0 AND nj > 0
        """,
        parameters={"signal": signal},
    ).result_rows
    return int(rows[0][0]), int(rows[0][1])


@dataclass(frozen=True)
class ErrorEstimateRow:
    """One estimate of a signal's errors (``model_version`` '': all audited versions);
    each measure as (value, low, high)."""

    signal: str
    signal_version: int
    model_version: str
    labelled: int
    sensitivity: tuple[float, float, float]
    specificity: tuple[float, float, float]
    precision: tuple[float, float, float]
    estimated_at: datetime

    def values(self) -> list[object]:
        return [self.signal, self.signal_version, self.model_version, self.labelled,
                *self.sensitivity, *self.specificity, *self.precision,
                self.estimated_at.astimezone(UTC)]  # fmt: skip


_ESTIMATE_COLUMNS = [
    "signal", "signal_version", "model_version", "labelled", "sensitivity", "sensitivity_low",
    "sensitivity_high", "specificity", "specificity_low", "specificity_high", "precision",
    "precision_low", "precision_high", "estimated_at",
]  # fmt: skip


def record_error_estimates(client: Client, rows: Sequence[ErrorEstimateRow]) -> None:
    """Append estimates to ``signal_errors`` (a history: nothing is replaced)."""
    if rows:
        client.insert("signal_errors", [r.values() for r in rows], column_names=_ESTIMATE_COLUMNS)
