"""The conventions table as Markdown, for ``docs/ingest/otlp.md`` (``docs/hooks/reference.py``
fills its ``<!-- reference:otlp-conventions -->`` marker with :func:`markdown_table`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from streams.otlp.conventions import CONVENTIONS, Convention
from streams.otlp.extract import (
    APP_KEYS,
    DEFAULT_MODEL_VERSION_KEYS,
    IMAGE_KEYS,
    INPUT_TOKEN_KEYS,
    KEPT_ATTRIBUTES,
    MODEL_KEYS,
    OUTPUT_TOKEN_KEYS,
    RESOURCE_APP_KEYS,
)

__all__ = ["markdown_table"]


def _code(keys: Iterable[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") or "–" for cell in cells) + " |"


def _union(conventions: Sequence[Convention], name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for c in conventions for k in getattr(c, name)))


def _fields() -> Iterator[str]:
    """Where each event field comes from (the extractor's keys, derived from the table)."""
    yield "| event field | taken from (first that has a value) |"
    yield "| --- | --- |"
    yield _row("`event_id`", "`<trace_id hex>-<span_id hex>` (a log record outside a span: "
               "hash of the record)")  # fmt: skip
    yield _row("`timestamp`, `latency_ms`",
               "span start; end − start (log records: their time, no latency)")  # fmt: skip
    yield _row("`model`", f"{_code(MODEL_KEYS)}; else `TELLTALE_OTLP_DEFAULT_MODEL` (`unknown`)")
    yield _row("`model_version`", "`TELLTALE_OTLP_MODEL_VERSION_FROM`, tried in order on the "
               f"span then the resource; default `{','.join(DEFAULT_MODEL_VERSION_KEYS)}`; else "
               "`TELLTALE_OTLP_DEFAULT_MODEL_VERSION` (`unknown`)")  # fmt: skip
    yield _row("`app`", f"resource {_code(RESOURCE_APP_KEYS)}, else {_code(APP_KEYS)}")
    users, sessions = _union(CONVENTIONS, "user_keys"), _union(CONVENTIONS, "session_keys")
    yield _row("`user_id` / `session_id`", f"{_code(users)} / {_code(sessions)}, kept in "
               "`attributes`, from which the event contract fills them")  # fmt: skip
    yield _row("`usage.input_tokens` / `usage.output_tokens`",
               f"{_code(INPUT_TOKEN_KEYS)} / {_code(OUTPUT_TOKEN_KEYS)}: a whole number "
               "from 0 to 2³²−1 (or its decimal text); any other value is kept in `attributes` "
               "under its key instead")  # fmt: skip
    yield _row("prompt / output", "the first convention of the table below that has any: the "
               "last `user` message (earlier turns are history), or all message text when no "
               "message has a role; the first output message (the first choice)")  # fmt: skip
    yield _row("`output.image`", "an output `blob` part with an image MIME type (becomes a "
               "`data:` URI), a `uri` part with an image MIME type or modality, else "
               f"{_code(IMAGE_KEYS)}")  # fmt: skip
    yield _row("`attributes`", f"{_code(KEPT_ATTRIBUTES)}, `otel.trace_id`, `otel.span_id`, "
               "`otel.convention` (the convention that supplied the content), "
               "`telltale.clipped` (a text cut to the event's limit)")  # fmt: skip


def _conventions(conventions: Sequence[Convention]) -> Iterator[str]:
    yield ("| `otel.convention` | written by | a generation when | prompt / output from "
           "| other attributes |")  # fmt: skip
    yield "| --- | --- | --- | --- | --- |"
    for c in conventions:
        r = c.recognised_by
        recognised = f"`{r.key}` in {_code(sorted(r.values))}" if r else ""
        if r and r.upper:
            recognised += " (any case)"
        if c.log_event:
            recognised += f"; a log record `{c.log_event}`"
        content = c.content.describe() if c.content else ""
        if c.image_keys:
            content += ("; " if content else "") + f"an image in {_code(c.image_keys)}"
        app = [*(f"resource `{k}`" for k in c.resource_app_keys), *(f"`{k}`" for k in c.app_keys)]
        keys = [("model", _code(c.model_keys)), ("model_version", _code(c.model_version_keys)),
                ("app", ", ".join(app)), ("provider", _code(c.provider_keys)),
                ("input tokens", _code(c.input_token_keys)),
                ("output tokens", _code(c.output_token_keys)), ("user", _code(c.user_keys)),
                ("session", _code(c.session_keys)), ("kept", _code(c.kept_keys))]  # fmt: skip
        other = "; ".join(f"{what}: {found}" for what, found in keys if found)
        yield _row(f"`{c.name}`", c.title, recognised, content, other)


def markdown_table(conventions: Sequence[Convention] = CONVENTIONS) -> str:
    """Two Markdown tables: where each event field comes from, and one row per convention (in
    table order; content comes from the first that has any)."""
    return "\n".join([*_fields(), "", *_conventions(conventions)]) + "\n"
