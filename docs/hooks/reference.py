"""The documentation site's reference pages, generated from the code when the site is built.

``mkdocs.yml`` names this file under ``hooks:``. A page that holds the marker
``<!-- reference:cli -->`` gets every command of the ``telltale`` Typer app (name, help,
arguments and options); one that holds ``<!-- reference:settings -->`` gets every setting of
:class:`telltale.settings.Settings` (environment variable, type, default, description); one
that holds ``<!-- reference:otlp-conventions -->`` gets the OTLP conventions table rendered
from :data:`streams.otlp.conventions.CONVENTIONS`. Nothing is written by hand, so the
reference cannot go stale. ``tests/project/test_docs_reference.py`` calls :func:`cli_reference` and
:func:`settings_reference` directly.
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLI_MARKER = "<!-- reference:cli -->"
SETTINGS_MARKER = "<!-- reference:settings -->"
OTLP_MARKER = "<!-- reference:otlp-conventions -->"


def _use_this_checkout() -> None:
    """Import ``telltale`` from the checkout being documented, not from wherever it is installed."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def _cell(text: str) -> str:
    """Text safe for one cell of a Markdown table."""
    return " ".join(text.split()).replace("|", "\\|")


def _rst_to_md(text: str) -> str:
    """Docstrings and help texts as Markdown: reStructuredText literals (``x``) become `x`, and
    angle brackets outside them are escaped (``<EMAIL_ADDRESS>`` is a placeholder, not HTML)."""
    parts = re.split(r"(`[^`]*`)", re.sub(r"``(.+?)``", r"`\1`", text))
    return "".join(
        part if part.startswith("`") else part.replace("<", "&lt;").replace(">", "&gt;")
        for part in parts
    )


def type_name(annotation: Any) -> str:
    """A short, readable name of a type annotation: ``int``, ``str | None``, ``'a' | 'b'``."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _value(value: Any) -> str:
    """A default as it would be written in the environment."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple | list | set | frozenset):
        return ",".join(_value(v) for v in value) if value else "(empty)"
    return str(value)


# --- CLI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandDoc:
    """One command of the CLI: its full path (``telltale signals add``), help and parameters."""

    path: str
    help: str
    params: tuple[Any, ...]
    is_group: bool


def _subcommands(command: Any) -> Iterator[tuple[str, Any]]:
    # Typer >= 0.20 vendors its own click, so duck typing rather than isinstance(click.Group).
    commands = getattr(command, "commands", None)
    if not commands:
        return
    for name in sorted(commands):
        yield name, commands[name]


def walk_commands(command: Any, path: str = "telltale") -> Iterator[CommandDoc]:
    """Every visible command and group under ``command``, depth first, sorted by name."""
    subs = list(_subcommands(command))
    yield CommandDoc(
        path=path,
        help=inspect.cleandoc(command.help or ""),
        params=tuple(p for p in command.params if not getattr(p, "hidden", False)),
        is_group=bool(subs),
    )
    for name, sub in subs:
        if not getattr(sub, "hidden", False):
            yield from walk_commands(sub, f"{path} {name}")


def _telltale_commands() -> list[CommandDoc]:
    _use_this_checkout()
    import typer

    from telltale.cli import app

    return list(walk_commands(typer.main.get_command(app)))


def _param_type(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return type_name(descriptor.annotation)
    click_type = getattr(param, "type", None)
    return str(getattr(click_type, "name", "")) or "text"


def _param_default(param: Any) -> str:
    if param.required:
        return "required"
    default = param.default
    if callable(default) or default is None or default == "" or default == ():
        return "–"
    return f"`{_value(default)}`"


def _param_names(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{param.metavar or param.name.upper()}`"
    names = [*param.opts, *param.secondary_opts]
    return " / ".join(f"`{n}`" for n in names)


def _parent(path: str) -> str | None:
    return path.rsplit(" ", 1)[0] if " " in path else None


def cli_reference(commands: list[CommandDoc] | None = None) -> str:
    """Markdown for every command of the ``telltale`` CLI."""
    commands = _telltale_commands() if commands is None else commands
    out: list[str] = []
    for doc in commands:
        level = "#" * min(2 + doc.path.count(" ") - 1, 4) if doc.path != "telltale" else "##"
        out += [f"{level} `{doc.path}`", ""]
        if doc.help:
            out += [_rst_to_md(doc.help), ""]
        if doc.is_group:
            children = [c.path.rsplit(" ", 1)[1] for c in commands if _parent(c.path) == doc.path]
            out += ["Subcommands: " + ", ".join(f"`{name}`" for name in children) + ".", ""]
        if doc.params:
            out += ["| argument / option | type | default | help |", "| --- | --- | --- | --- |"]
            for p in doc.params:
                help_text = _cell(_rst_to_md(getattr(p, "help", None) or ""))
                if getattr(p, "envvar", None):
                    help_text += f" (env `{p.envvar}`)"
                out.append(
                    f"| {_param_names(p)} | {_param_type(p)} | {_param_default(p)} | {help_text} |"
                )
            out.append("")
    return "\n".join(out)


def command_paths() -> list[str]:
    """``telltale``, ``telltale migrate``, ``telltale signals add``, ...: every command's path."""
    return [doc.path for doc in _telltale_commands()]


# --- settings -------------------------------------------------------------------------------


def settings_sections() -> list[tuple[str, type[Any]]]:
    """(section name, the ``BaseSettings`` class that reads it), in the order of ``Settings``."""
    _use_this_checkout()
    from pydantic_settings import BaseSettings

    import telltale.settings as module

    sections: list[tuple[str, type[Any]]] = []
    for name, field in module.Settings.model_fields.items():
        factory = field.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseSettings):
            sections.append((name, factory))
    # any section the tree does not build by default still gets a table
    for _, cls in inspect.getmembers(module, inspect.isclass):
        prefix = str(getattr(cls, "model_config", {}).get("env_prefix", ""))
        known = any(cls is section for _, section in sections)
        if issubclass(cls, BaseSettings) and prefix.startswith("TELLTALE_") and not known:
            sections.append((cls.__name__, cls))
    return sections


def env_name(section: type[Any], field: str) -> str:
    """The environment variable of one field: the section's prefix and the field, upper case."""
    return str(section.model_config.get("env_prefix", "")) + field.upper()


def _field_default(field: Any) -> str:
    from pydantic import SecretStr
    from pydantic_core import PydanticUndefined

    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(secret)"
    shown = _value(value)
    return "–" if shown == "–" else f"`{_cell(shown)}`"


def settings_reference() -> str:
    """Markdown for every setting: one table per section."""
    from pydantic import SecretStr

    out: list[str] = []
    for name, section in settings_sections():
        prefix = str(section.model_config.get("env_prefix", ""))
        out += [f"## `{prefix}*` ({name})", ""]
        doc = inspect.getdoc(section)
        if doc and section.__doc__:
            out += [_rst_to_md(doc.split("\n\n", 1)[0]), ""]
        out += ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
        for field_name, field in section.model_fields.items():
            kind = type_name(field.annotation)
            secret = "SecretStr" in kind or field.annotation is SecretStr
            description = _cell(_rst_to_md(field.description or ""))
            if secret:
                description = (description + " " if description else "") + "(secret: never logged)"
            out.append(
                f"| `{env_name(section, field_name)}` | {kind} | {_field_default(field)} "
                f"| {description} |"
            )
        out.append("")
    return "\n".join(out)


# --- OTLP conventions -----------------------------------------------------------------------


def otlp_conventions_reference() -> str:
    """Markdown for the GenAI conventions the OTLP decoder reads (from its table)."""
    _use_this_checkout()
    from streams.otlp.markdown import markdown_table

    return markdown_table()


# --- mkdocs hook ----------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the reference markers of a page with the generated text."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_reference())
    if OTLP_MARKER in markdown:
        markdown = markdown.replace(OTLP_MARKER, otlp_conventions_reference())
    return markdown
