"""What the ``telltale signals`` commands share: the stored signal by name, the embedders of
the current settings, fitting against the store (plain or weak), labels on audit draws."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from telltale.cli_common import cli_settings

if TYPE_CHECKING:
    from signals import FittedSignal, SignalSpec

__all__ = [
    "SinceOpt",
    "UntilOpt",
    "WeakWindow",
    "current_signal",
    "field_embedders",
    "label_drawn_event",
    "signal_summary",
    "trained",
]

SinceOpt = Annotated[str | None, typer.Option(help="RFC 3339, inclusive")]
UntilOpt = Annotated[str | None, typer.Option(help="RFC 3339, exclusive")]


def current_signal(client: Any, name: str) -> FittedSignal:
    from telltale.signal_store import ClickHouseSignalStore

    fitted = ClickHouseSignalStore(client).get(name)
    if fitted is not None:
        return fitted
    raise typer.BadParameter(f"no signal named {name!r}; see `telltale signals list`")


def field_embedders() -> Any:
    """The field embedders of the current settings (text model and open_clip)."""
    from telltale.wiring import make_embedders

    settings = cli_settings()
    return make_embedders(settings.embedder, settings.text_embedder, lazy_image=True)


def signal_summary(fitted: FittedSignal) -> dict[str, Any]:
    return {
        "name": fitted.name, "version": fitted.version, "kind": fitted.kind,
        "classifier": fitted.spec.classifier, "field": fitted.field,
        "embedder_id": fitted.embedder_id, "threshold": fitted.threshold,
        "metrics": fitted.metrics, "n_positive": fitted.n_positive,
        "n_negative": fitted.n_negative, "train_ms": fitted.train_ms,
        "trained_at": fitted.trained_at.isoformat(), "degenerate": fitted.degenerate,
        "degenerate_reason": fitted.degenerate_reason,
    }  # fmt: skip


@dataclass(frozen=True)
class WeakWindow:
    """Which stored events ``--weak`` labels."""

    since: datetime | None = None
    until: datetime | None = None
    pool: int = 2_000


def trained(
    client: Any, spec: SignalSpec, embedder: Any, weak: bool, window: WeakWindow
) -> FittedSignal:
    """``spec`` fitted against the store: plain, or (``weak``) with weak labels too. Every
    signal a labelling function names must be registered, with ``--weak`` or without."""
    from signals import train_signal, train_weak_signal
    from telltale.signal_store import labelling_signals, stored_examples, weak_pool

    named = labelling_signals(client, spec)
    lookup = stored_examples(client)
    if not weak:
        return train_signal(spec, embedder, lookup=lookup)
    if not spec.labelling_functions:
        raise typer.BadParameter(f"signal {spec.name!r} names no labelling_functions for --weak")
    pool = weak_pool(client, spec.field, embedder.id_for(spec.field), since=window.since,
                     until=window.until, limit=window.pool)  # fmt: skip
    return train_weak_signal(spec, embedder, pool, named, lookup=lookup)


def label_drawn_event(client: Any, name: str, event_id: str, positive: bool, who: str) -> None:
    """A label given to an event that an audit drew is an audit label too (source ``label``)."""
    from storage import AuditLabel, drawn_versions, store_audit_labels

    versions = drawn_versions(client, name, [event_id]).get(event_id, set())
    store_audit_labels(client, [AuditLabel(name, v, event_id, int(positive), who, "label")
                                for v in sorted(versions)])  # fmt: skip
