"""The OTLP conventions table: one indexed-key parser, and documentation generated from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from streams.otlp.conventions import CONVENTIONS, IndexedMessages, recognitions
from streams.otlp.extract import GENERATION_OPERATIONS, KEPT_ATTRIBUTES
from streams.otlp.markdown import markdown_table
from streams.otlp.messages import indexed

REPO = Path(__file__).resolve().parents[2]


def test_indexed_keys_become_an_ordered_list() -> None:
    attrs = {"p.1.content": "b", "p.0.role": "user", "p.0.content": "a", "p.².content": "x",
             "p.00.content": "a2", "q.0.content": "other", "p.x.content": "no"}  # fmt: skip
    assert indexed(attrs, "p") == [{"role": "user", "content": "a2"}, {"content": "b"}]
    assert indexed(attrs, "p", {"role"}) == [{"role": "user"}]


def test_every_indexed_convention_uses_the_one_parser() -> None:
    openinference = next(c for c in CONVENTIONS if c.name == "openinference.messages")
    assert isinstance(openinference.content, IndexedMessages)
    attrs = {
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.contents.0.message_content.text": "hello",
        "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://i",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "be brief",
    }
    messages = openinference.content.messages(attrs, "llm.input_messages")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["parts"] == [
        {"type": "text", "content": "hello"},
        {"type": "uri", "modality": "image", "uri": "https://i"},
    ]


def test_names_are_unique_and_the_derived_keys_come_from_the_rows() -> None:
    names = [c.name for c in CONVENTIONS]
    assert len(names) == len(set(names))
    assert {"chat", "text_completion", "generate_content", "image"} <= GENERATION_OPERATIONS
    assert all(k in KEPT_ATTRIBUTES for c in CONVENTIONS for k in c.kept())
    deciding = [r.key for r in recognitions() if r.not_a_generation]
    assert deciding == ["gen_ai.operation.name", "openinference.span.kind"]


def test_the_generated_table_names_every_convention() -> None:
    table = markdown_table()
    for convention in CONVENTIONS:
        assert f"| `{convention.name}` | {convention.title} |" in table
        if convention.content is not None:
            assert convention.content.describe().replace("|", "\\|") in table
    assert "| `model` | `gen_ai.request.model`, `gen_ai.response.model`, `llm.model_name`" in table


def test_the_docs_page_is_filled_from_the_table() -> None:
    page = (REPO / "docs" / "ingest" / "otlp.md").read_text(encoding="utf-8")
    hook_file = REPO / "docs" / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference_hook_otlp", hook_file)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = hook
    spec.loader.exec_module(hook)
    assert hook.OTLP_MARKER in page
    filled = hook.on_page_markdown(page, None, None, None)
    assert hook.OTLP_MARKER not in filled
    assert all(f"`{c.name}`" in filled for c in CONVENTIONS)
