"""``telltale discover``: clusters of recent outputs, ranked, with examples and signal scores.

Reads a deterministic sample of the recent window's output embeddings per model (and of the
reference window just before it, of the same length), ranks clusters with
:func:`signals.discovery.discover_clusters`, and describes the top ones: de-duplicated example
outputs nearest each centroid, the cluster's current signal scores (mean score and flagged share
per signal over its members), and positives and negatives for a signal started from it
(``telltale signals add --from-cluster ID NAME``). Each run's clusters are stored in
``discovered_clusters`` for the dashboard panel and the report.

Windows default to the last 24 hours *of data* (a replayed log from September is analysed as
of September), and the reference window is the same length just before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from signals import discover_clusters
from storage import (
    ClusterRow,
    cluster_signal_scores,
    data_bounds,
    event_contents,
    prompt_models,
    prompt_sample,
    save_clusters,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

__all__ = ["DiscoveryOptions", "as_dict", "discover", "window_of_data"]

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class DiscoveryOptions:
    field: str = "output.text"
    sample: int = 3000
    clusters: int | None = None
    top: int = 10
    examples: int = 5
    positives: int = 16
    negatives: int = 16
    min_size: int = 5
    seed: int = 0


def window_of_data(
    client: Client, since: datetime | None, until: datetime | None, span: timedelta
) -> tuple[datetime, datetime] | None:
    """``[since, until)``; missing ends from the data: until its last minute, ``span`` long."""
    if until is None:
        bounds = data_bounds(client)
        if bounds is None:
            return None
        until = bounds[1] + timedelta(minutes=1)
    until = until.astimezone(UTC)
    since = (since or until - span).astimezone(UTC)
    return since, until


def _dedupe_key(text: str) -> str:
    """Near-duplicates (same words, other numbers or spacing) share a key."""
    return _SPACE.sub(" ", _DIGITS.sub("0", text.strip().lower()))


def _distinct(ids: list[str], texts: dict[str, str], limit: int) -> list[str]:
    seen: set[str] = set()
    out = []
    for event_id in ids:
        key = _dedupe_key(texts.get(event_id, ""))
        if key and key not in seen:
            seen.add(key)
            out.append(event_id)
            if len(out) == limit:
                break
    return out


def _cluster_id(model: str, field: str, window_end: datetime, rank: int) -> str:
    text = f"{model}|{field}|{window_end.isoformat()}|{rank}"
    return "c" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]


def discover(
    client: Client,
    *,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    options: DiscoveryOptions | None = None,
    save: bool = True,
    now: datetime | None = None,
) -> list[ClusterRow]:
    """The top clusters of every model (or one) in the window; stored unless ``save=False``."""
    o = options or DiscoveryOptions()
    window = window_of_data(client, since, until, timedelta(hours=24))
    if window is None:
        return []
    start, end = window
    reference_start = start - (end - start)
    models = [model] if model else prompt_models(client, start, end, o.field)
    run_at = (now or datetime.now(UTC)).astimezone(UTC)
    found: list[ClusterRow] = []
    for name in models:
        found += _discover_model(client, name, start, end, reference_start, o, run_at)
    if save:
        save_clusters(client, found)
    return found


def _discover_model(
    client: Client,
    model: str,
    start: datetime,
    end: datetime,
    reference_start: datetime,
    o: DiscoveryOptions,
    run_at: datetime,
) -> list[ClusterRow]:
    recent = prompt_sample(client, model, start, end, field=o.field, limit=o.sample)
    if len(recent.event_ids) < max(o.min_size * 2, 10):
        return []
    reference = prompt_sample(client, model, reference_start, start, field=o.field,
                              limit=o.sample, embedder_id=recent.embedder_id)  # fmt: skip
    x_ref = np.asarray(reference.vectors, dtype=np.float64) if reference.vectors else None
    clusters, bulk = discover_clusters(
        np.asarray(recent.vectors, dtype=np.float64), x_ref, k=o.clusters,
        min_size=o.min_size, seed=o.seed,
    )  # fmt: skip
    bulk_ids = reference.event_ids if x_ref is not None else recent.event_ids
    clusters = clusters[: o.top]
    # Negatives: distinct outputs from the inner half of the bulk (nearest its centre), so the
    # spec contrasts the cluster with ordinary outputs, not with other odd ones.
    pool = [bulk_ids[i] for i in bulk[: max(4 * o.negatives, len(bulk) // 2)]]
    wanted = {recent.event_ids[i] for c in clusters for i in c.recent_members[: 4 * o.positives]}
    wanted |= set(pool)
    texts = event_contents(client, sorted(wanted), o.field)
    rows = []
    for c in clusters:
        member_ids = [recent.event_ids[i] for i in c.recent_members]
        member_set = set(member_ids)
        examples = _distinct(member_ids[: 4 * o.positives], texts, o.examples)
        positives = _distinct(member_ids[: 4 * o.positives], texts, o.positives)
        negatives = _distinct([e for e in pool if e not in member_set], texts, o.negatives)
        rows.append(ClusterRow(
            cluster_id=_cluster_id(model, o.field, end, c.rank), run_at=run_at, model=model,
            field=o.field, embedder_id=recent.embedder_id, rank=c.rank, size=c.size,
            recent_share=c.recent_share,
            reference_share=c.reference_share if c.reference_share == c.reference_share else 0.0,
            growth=c.growth, distance=c.distance, score=c.score, examples=tuple(examples),
            example_texts=tuple(texts.get(e, "")[:300] for e in examples),
            positives=tuple(positives), negatives=tuple(negatives),
            signal_scores=cluster_signal_scores(client, member_ids),
            window_start=start, window_end=end,
        ))  # fmt: skip
    return rows


def as_dict(row: ClusterRow) -> dict[str, Any]:
    """A JSON-ready view of one cluster, for ``--format json``."""
    return {
        "cluster_id": row.cluster_id, "rank": row.rank, "model": row.model, "field": row.field,
        "size": row.size, "recent_share": row.recent_share,
        "reference_share": row.reference_share, "growth": row.growth,
        "distance": row.distance, "score": row.score,
        "examples": [{"event_id": e, "text": t} for e, t in
                     zip(row.examples, row.example_texts, strict=True)],
        "signal_scores": row.signal_scores, "window_start": row.window_start.isoformat(),
        "window_end": row.window_end.isoformat(), "embedder_id": row.embedder_id,
    }  # fmt: skip
