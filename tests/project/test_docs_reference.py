"""The documentation site's generated reference names every CLI command and every setting."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "docs" / "hooks" / "reference.py"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _command_paths(command: Any, path: str = "telltale") -> Iterator[str]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not getattr(sub, "hidden", False):
            yield from _command_paths(sub, f"{path} {name}")


def test_every_cli_command_and_option_is_in_the_reference(reference: ModuleType) -> None:
    from telltale.cli import app

    root = typer.main.get_command(app)
    text = reference.cli_reference()
    paths = list(_command_paths(root))
    assert len(paths) > 20  # groups and their commands, not just the top level
    missing = [p for p in paths if f"`{p}`" not in text]
    assert missing == []
    # every option of one command with many, e.g. `telltale replay`
    replay = root.commands["replay"]  # type: ignore[attr-defined]
    for param in replay.params:
        for opt in param.opts:
            if opt.startswith("-"):
                assert f"`{opt}`" in text


def _setting_sections() -> list[type[BaseSettings]]:
    """Every BaseSettings class of telltale.settings, found without the generator's help."""
    import telltale.settings as module

    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseSettings)
        and cls is not BaseSettings
        and str(cls.model_config.get("env_prefix", "")).startswith("TELLTALE_")
    ]


def test_every_setting_is_in_the_reference(reference: ModuleType) -> None:
    text = reference.settings_reference()
    sections = _setting_sections()
    assert len(sections) >= 15
    names = [
        str(cls.model_config.get("env_prefix")) + field.upper()
        for cls in sections
        for field in cls.model_fields
    ]
    assert len(names) > 100
    missing = [name for name in names if f"`{name}`" not in text]
    assert missing == []


def test_secrets_show_no_default(reference: ModuleType) -> None:
    text = reference.settings_reference()
    row = next(line for line in text.splitlines() if "`TELLTALE_SERVE_API_KEYS`" in line)
    assert "secret" in row


def test_the_hook_fills_the_markers(reference: ModuleType) -> None:
    page = f"# CLI\n\n{reference.CLI_MARKER}\n\n# Settings\n\n{reference.SETTINGS_MARKER}\n"
    out = reference.on_page_markdown(page, page=None, config=None, files=None)
    assert reference.CLI_MARKER not in out and reference.SETTINGS_MARKER not in out
    assert "`telltale signals add`" in out and "`TELLTALE_CLICKHOUSE_DSN`" in out
    # the site's reference pages carry the markers
    assert reference.CLI_MARKER in (REPO / "docs/reference/cli.md").read_text()
    assert reference.SETTINGS_MARKER in (REPO / "docs/reference/settings.md").read_text()


def test_placeholders_are_not_html(reference: ModuleType) -> None:
    shown = reference._rst_to_md("a <EMAIL_ADDRESS> in ``<x>``")
    assert shown == "a &lt;EMAIL_ADDRESS&gt; in `<x>`"
