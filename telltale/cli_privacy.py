"""``telltale forget --user ID | --session ID``: erase one person's or one session's data."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from telltale.cli_common import (
    CLI_ERRORS,
    ClickHouseOpt,
    FormatOpt,
    cli_settings,
    console,
    fail,
    open_client,
    print_json,
)

__all__ = ["forget"]


def forget(
    user: Annotated[
        str | None, typer.Option("--user", help="the user id as the app sent it")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="the session id as sent")] = None,
    request: Annotated[str, typer.Option(help="the erasure request's reference, logged")] = "",
    requested_by: Annotated[str, typer.Option(help="who asked, logged")] = "",
    clickhouse: ClickHouseOpt = None,
    fmt: FormatOpt = "text",
) -> None:
    """Delete every stored row of one user (or session): events, embeddings and window
    vectors, scores, feedback, audit rows, discovery examples, embedding-cache entries.

    The id is given as the application sent it; with TELLTALE_PRIVACY_ID_KEY set it is hashed
    with the key first, as it was when stored. Per-minute aggregate rates keep their counts
    (they hold no content and no id). The erasure is logged (table ``erasures``: counts,
    request, requester; never the id). Running it again deletes nothing.
    """
    if (user is None) == (session is None):
        raise typer.BadParameter("give exactly one of --user or --session")
    settings = cli_settings()
    try:
        with open_client(clickhouse) as client:
            erasure = _erase(client, settings, user, session, request, requested_by)
    except CLI_ERRORS as exc:
        raise fail(exc) from exc
    if fmt == "json":
        print_json({"rows": dict(erasure.rows), "total": erasure.total})
        return
    console.print(", ".join(f"{table} {count}" for table, count in erasure.rows.items()))
    console.print(f"{erasure.total} row(s) deleted; aggregate rates keep their counts")


def _erase(client: Any, settings: Any, user: str | None, session: str | None, request: str,
           requested_by: str) -> Any:  # fmt: skip
    from signals import content_key
    from storage import SubjectEvents, erase_subject
    from telltale.wiring import pseudonyms

    column: Literal["user_id", "session_id"] = "user_id" if user is not None else "session_id"
    subject = user if user is not None else session
    assert subject is not None
    ids = pseudonyms(settings)
    stored = ids(subject) if ids is not None else subject

    def keys(found: SubjectEvents) -> list[str]:
        return [content_key(embedder_id, field, text)
                for _, field, text in found.texts
                for embedder_id in found.embedders.get(field, ())]  # fmt: skip

    return erase_subject(client, column, stored, keys, request=request,
                         requested_by=requested_by,
                         cluster=settings.clickhouse.cluster or None)  # fmt: skip
