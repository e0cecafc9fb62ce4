"""Chat messages in the shapes the GenAI conventions write them, and the text of a turn.

Pure functions over attribute values: a message list from JSON or a structured attribute,
the parts of a message (semconv ``parts``, a plain ``content`` string, OpenAI-style content
parts), and :func:`indexed`, the one parser of indexed attribute keys (``prefix.N.suffix``)
that every indexed convention of :mod:`streams.otlp.conventions` uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Container, Mapping, Sequence
from typing import Any

from streams._json import parse_json
from streams.errors import InvalidEvent, JsonTooDeep

__all__ = [
    "image_value",
    "indexed",
    "message_list",
    "messages_or_text",
    "output_of",
    "parts",
    "prompt_of",
    "text",
]

_INDEX = re.compile(r"[0-9]{1,9}")  # a message index: ASCII digits ("²".isdigit() is True)
_IMAGE_URL_SCHEMES = ("http://", "https://", "s3://", "gs://", "az://", "data:")


def indexed(
    attrs: Mapping[str, Any], prefix: str, keep: Container[str] | None = None
) -> list[dict[str, Any]]:
    """``prefix.N.suffix`` attributes as a list of ``{suffix: value}``, ordered by ``N``.

    ``N`` is 1 to 9 ASCII digits (``0`` and ``00`` are the same index); the suffix is all that
    follows it (it may hold further indexed keys: parse it again with this function). Only the
    suffixes in ``keep`` count, when given, and an index with none of them is left out. Of two
    keys that name the same index and suffix the later wins, and stands where it was written
    last."""
    by_index: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    skip = len(start)
    for key, value in attrs.items():
        if not key.startswith(start):
            continue
        index, _, suffix = key[skip:].partition(".")
        if (keep is None or suffix in keep) and _INDEX.fullmatch(index):
            fields = by_index.setdefault(int(index), {})
            if suffix in fields:
                del fields[suffix]
            fields[suffix] = value
    return [by_index[i] for i in sorted(by_index)]


def message_list(value: Any, name: str) -> list[dict[str, Any]]:
    """A message list from a JSON string or a structured attribute (anything else: none).

    Text that is not JSON is one message of plain text; JSON nested deeper than
    :data:`~streams._json.MAX_JSON_DEPTH` makes the span invalid (``name`` says where)."""
    if isinstance(value, str):
        try:
            value = parse_json(value)
        except JsonTooDeep as exc:
            raise InvalidEvent(f"{name}: {exc.reason}") from exc
        except ValueError:
            return [{"role": "", "parts": [{"type": "text", "content": value}]}]
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def messages_or_text(value: Any, name: str) -> list[dict[str, Any]]:
    """A JSON message list, or plain text as one message (``gen_ai.prompt`` before 1.37)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            messages = message_list(stripped, name)
            if messages and any(parts(m) for m in messages):
                return messages
        return [{"role": "", "content": value}] if value else []
    return message_list(value, name)


def parts(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Parts of one message in any of the conventions' shapes."""
    found = message.get("parts")
    if isinstance(found, list):
        return [p for p in found if isinstance(p, dict)]
    content = message.get("content", message.get("message", {}).get("content")
                          if isinstance(message.get("message"), dict) else None)  # fmt: skip
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list):  # OpenAI-style content parts
        out: list[Mapping[str, Any]] = []
        for p in content:
            if isinstance(p, str):
                out.append({"type": "text", "content": p})
            elif isinstance(p, dict) and p.get("type") == "text":
                out.append({"type": "text", "content": p.get("text", p.get("content", ""))})
            elif isinstance(p, dict) and p.get("type") == "image_url":
                url = p.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                out.append({"type": "uri", "modality": "image", "uri": url})
        return out
    return []


def _text_of(message: Mapping[str, Any]) -> str:
    texts = [str(p.get("content", p.get("text", ""))) for p in parts(message)
             if p.get("type") in ("text", None)]  # fmt: skip
    return "\n".join(t for t in texts if t)


def _image_of(message: Mapping[str, Any]) -> str:
    for part in parts(message):
        mime = str(part.get("mime_type") or part.get("mimeType") or "")
        is_image = mime.startswith("image/") or part.get("modality") == "image"
        if not is_image:
            continue
        if part.get("type") == "blob" and part.get("content"):
            return f"data:{mime or 'image/png'};base64,{part['content']}"
        if part.get("type") == "uri" and part.get("uri"):
            return str(part["uri"])
    return ""


def prompt_of(messages: Sequence[Mapping[str, Any]], role: str) -> str:
    """The text of the last message of ``role`` (the turn this call answers; earlier turns are
    history), or all text when no message has that role."""
    turns = [m for m in messages if str(m.get("role", "")).lower() == role]
    if turns:
        return _text_of(turns[-1])
    return "\n".join(t for t in (_text_of(m) for m in messages) if t)


def output_of(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Text and image of the first output message that has either (the first choice)."""
    for message in messages:
        found_text, image = _text_of(message), _image_of(message)
        if found_text or image:
            return found_text, image
    return "", ""


def text(value: Any) -> str:
    """An attribute value as text: strings as they are, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def image_value(value: Any) -> str:
    """An image attribute (OpenLIT's ``gen_ai.response.image``): a URL, or bare base64 as a
    ``data:`` URI; anything else is no image."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str) or not value:
        return ""
    if value.startswith(_IMAGE_URL_SCHEMES):
        return value
    try:  # OpenLIT records b64_json responses as bare base64
        base64.b64decode(value[:64] + "=" * (-len(value[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return ""
    return f"data:image/png;base64,{value}"
