"""Stand-ins for PagerDuty's Events API v2 and Slack's incoming webhooks on 127.0.0.1.

Each checks every body it receives against a JSON Schema written from the service's documented
contract and answers as the service documents:

* PagerDuty (the Events API v2 reference, PagerDuty/api-schema ``reference/events-v2``):
  ``routing_key`` (the 32-character integration key) and ``event_action`` (trigger, acknowledge,
  resolve) required; ``dedup_key`` ≤ 255 characters, required unless triggering; a trigger's
  ``payload`` needs ``summary`` (≤ 1024), ``source`` and ``severity`` (critical, error,
  warning, info), and its ``timestamp`` is a date-time; ``links`` need ``href``, ``images``
  ``src``; ``client``, ``client_url``, ``links`` and ``images`` sit beside ``payload``. A valid
  event is answered ``202 {"status": "success", "message": "Event processed", "dedup_key"}``,
  an invalid one ``400 {"status": "invalid event", "message": "Event object is invalid",
  "errors": [...]}``.
* Slack (Block Kit reference): at most 50 blocks of known types; a text object is
  ``plain_text`` or ``mrkdwn`` with non-empty text; a header's text is ``plain_text`` of at
  most 150 characters; a section has ``text`` (≤ 3000) or ``fields`` (≤ 10 of ≤ 2000); a
  context has 1-10 elements; an actions block 1-25 elements (a button's text ``plain_text``
  ≤ 75, its ``url`` ≤ 3000, ``action_id`` ≤ 255); ``block_id`` ≤ 255. Slack answers ``200 ok``,
  an invalid message ``400 invalid_blocks``.

Tests can script answers before the schema check (``answers``: status, body, headers), to
exercise retries. Our own stricter expectations (a resolve carries nothing but the three keys;
timestamps in UTC) are written here too and marked as ours.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from jsonschema import Draft202012Validator

from alerts.tracks import detection_id
from storage import DetectionRow

_URL = {"type": "string", "pattern": r"^https?://\S+$", "maxLength": 3000}

PAGERDUTY_EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "PagerDuty Events API v2 alert event",
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                # date-time (RFC 3339); UTC is ours.
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "pattern": r"(Z|\+00:00)$",
                },
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
        "client": {"type": "string"},
        "client_url": _URL,
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["href"],
                "additionalProperties": False,
                "properties": {"href": _URL, "text": {"type": "string"}},
            },
        },
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["src"],
                "additionalProperties": False,
                "properties": {
                    "src": {"type": "string", "pattern": r"^https://\S+$"},
                    "href": _URL,
                    "alt": {"type": "string"},
                },
            },
        },
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    # Ours: follow-up events name the alert and carry nothing else.
    "else": {"required": ["dedup_key"], "maxProperties": 3},
}


def _text(limit: int, kind: str | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "text"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": kind} if kind else {"enum": ["plain_text", "mrkdwn"]},
            "text": {"type": "string", "minLength": 1, "maxLength": limit},
            "emoji": {"type": "boolean"},
            "verbatim": {"type": "boolean"},
        },
    }


_BLOCK_ID = {"type": "string", "maxLength": 255}
_BUTTON = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "button"},
        "text": _text(75, "plain_text"),
        "action_id": {"type": "string", "maxLength": 255},
        "url": _URL,
        "value": {"type": "string", "maxLength": 2000},
        "style": {"enum": ["primary", "danger"]},
    },
}
_IMAGE_ELEMENT = {
    "type": "object",
    "required": ["type", "image_url", "alt_text"],
    "properties": {"type": {"const": "image"}, "image_url": _URL, "alt_text": {"type": "string"}},
}


def _block(kind: str, required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", *required],
        "additionalProperties": False,
        "properties": {"type": {"const": kind}, "block_id": _BLOCK_ID, **properties},
    }


SLACK_MESSAGE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Slack incoming-webhook message with Block Kit blocks",
    "type": "object",
    "required": ["text", "blocks"],  # text: the notification and fallback line
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 40_000},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "oneOf": [
                    _block("header", ["text"], text=_text(150, "plain_text")),
                    {
                        **_block(
                            "section",
                            [],
                            text=_text(3000),
                            fields={
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 10,
                                "items": _text(2000),
                            },
                            accessory={"type": "object"},
                        ),
                        "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                    },
                    _block(
                        "context",
                        ["elements"],
                        elements={
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 10,
                            "items": {"oneOf": [_text(3000), _IMAGE_ELEMENT]},
                        },
                    ),
                    _block(
                        "actions",
                        ["elements"],
                        elements={"type": "array", "minItems": 1, "maxItems": 25, "items": _BUTTON},
                    ),
                    _block("divider", []),
                ]
            },
        },
    },
}

_FORMATS = Draft202012Validator.FORMAT_CHECKER  # date-time: rfc3339-validator is installed
PAGERDUTY = Draft202012Validator(PAGERDUTY_EVENT, format_checker=_FORMATS)
SLACK = Draft202012Validator(SLACK_MESSAGE, format_checker=_FORMATS)
Draft202012Validator.check_schema(PAGERDUTY_EVENT)
Draft202012Validator.check_schema(SLACK_MESSAGE)


def problems(validator: Draft202012Validator, body: Any) -> list[str]:
    """Every schema violation of ``body``, as ``path: message``."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}"
        for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    ]


Answer = tuple[int, str, dict[str, str]]
"""A scripted answer: status, body, headers."""


@dataclass
class Service:
    """What a stand-in received, and the answers it still has to give before its own."""

    kind: Literal["pagerduty", "slack"]
    port: int = 0
    answers: list[Answer] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    invalid: list[list[str]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, body: Any) -> Answer:
        """The service's own answer to a body it accepted past the scripted ones."""
        found = problems(PAGERDUTY if self.kind == "pagerduty" else SLACK, body)
        if found:
            self.invalid.append(found)
        if self.kind == "pagerduty":
            if found:
                message = {"status": "invalid event", "message": "Event object is invalid",
                           "errors": found}  # fmt: skip
                return 400, json.dumps(message), {"Content-Type": "application/json"}
            ok = {"status": "success", "message": "Event processed",
                  "dedup_key": body.get("dedup_key", "")}  # fmt: skip
            return 202, json.dumps(ok), {"Content-Type": "application/json"}
        if found:
            return 400, "invalid_blocks", {"Content-Type": "text/plain"}
        return 200, "ok", {"Content-Type": "text/plain"}


@contextmanager
def service(kind: Literal["pagerduty", "slack"]) -> Iterator[Service]:
    """Run a stand-in on an ephemeral port of 127.0.0.1; stop it afterwards."""
    svc = Service(kind)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                body = json.loads(raw)
                svc.paths.append(self.path)
                svc.requests.append(body)
                status, text, headers = svc.answers.pop(0) if svc.answers else svc.answer(body)
            data = text.encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    svc.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield svc
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- one incident, as the monitor stores it ---------------------------------------------------

OPENED = datetime(2026, 11, 3, 14, 7, tzinfo=UTC)
RESOLVED = datetime(2026, 11, 3, 16, 42, tzinfo=UTC)

_TOP_SLICE = {
    "slice": "customer_tier=free & locale=de", "keys": ["customer_tier", "locale"],
    "values": ["free", "de"], "events": 142, "failures": 44, "rate": 0.3099,
    "rate_interval": [0.2381, 0.3891], "baseline_events": 610, "baseline_failures": 30,
    "baseline_rate": 0.0492, "excess_failures": 37.0, "excess_interval": [28.2, 44.9],
    "share_of_excess": 0.82,
}  # fmt: skip


def incident(state: Literal["firing", "resolved"] = "firing") -> DetectionRow:
    """A release spike of ``stock_advice`` on chat v2 (baseline v1), as the engine writes it:
    the counts the test fired with per signal, and where the excess concentrates."""
    signal = {
        "signal": "stock_advice", "fired_at": OPENED.isoformat(), "e_value": 412.7,
        "threshold": 200.0, "effect": 0.0598, "effect_low": 0.0211, "effect_high": 0.0985,
        "n_new": 1180, "k_new": 83, "n_base": 5210, "k_base": 55,
        "localization": {"top": _TOP_SLICE["slice"], "slices": [_TOP_SLICE]},
    }  # fmt: skip
    details: dict[str, Any] = {
        "released_at": "2026-11-03T09:30:00+00:00", "release_source": "auto",
        "baseline_version": "v1", "family_size": 2, "alpha_per_signal": 0.0025,
        "signals": [signal], "localization": {"top": _TOP_SLICE["slice"], "slices": [_TOP_SLICE]},
        "n_new": 1180, "k_new": 83, "n_base": 5210, "k_base": 55,
    }  # fmt: skip
    if state == "resolved":
        details["resolve_reason"] = "superseded by a newer release"
    return DetectionRow(
        detection_id=detection_id("release_spike", "model=chat/v2", OPENED),
        detector="release_spike", key="model=chat/v2", model="chat", model_version="v2",
        signal="stock_advice",
        state=state, opened_at=OPENED, resolved_at=RESOLVED if state == "resolved" else None,
        statistic=412.7, threshold=200.0, p_value=0.0024, e_value=412.7, effect=0.0598,
        effect_low=0.0211, effect_high=0.0985, details=details, notified="",
    )  # fmt: skip
