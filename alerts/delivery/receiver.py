"""``telltale alerts receiver``: the stack's own alert receiver and runbook server.

Grafana's provisioned contact point posts to it (``http://alert-receiver:8080/telltale`` inside
docker-compose), so the shipped stack delivers its notifications somewhere real: each alert of
each webhook message is logged as one line (status, rule, labels, summary) and counted. It also
serves ``alerts/runbooks.md`` as HTML at ``/runbooks``, which the rules' absolute
``runbook_url`` annotations point to (``http://localhost:8080/runbooks#<rule uid>``), and
``/healthz``. Point Grafana's contact point at your real receiver (Slack, PagerDuty, ...) with
``TELLTALE_GRAFANA_WEBHOOK_URL`` and ``telltale alerts push``; this one is the default sink.

Standard library only; one small threaded HTTP server.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

__all__ = ["ReceivedAlert", "Receiver", "render_runbooks"]

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 20
_NUMBER = re.compile(r"^\d+\. ")


@dataclass(frozen=True)
class ReceivedAlert:
    status: str
    rule: str
    labels: dict[str, str]
    summary: str
    runbook_url: str


@dataclass
class _State:
    alerts: list[ReceivedAlert] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _inline(text: str) -> str:
    html = escape(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    html = re.sub(r"\*(.+?)\*", r"<em>\1</em>", html)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", html)


def render_runbooks(markdown: str | None = None) -> str:
    """The runbooks as one HTML page; each ``## <uid>`` section is anchored at ``#<uid>``."""
    text = markdown if markdown is not None else runbooks_markdown()
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
             "<title>telltale runbooks</title></head><body>"]  # fmt: skip
    for block in text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        if block.startswith("## "):
            title = block[3:].strip()
            parts.append(f'<h2 id="{escape(title, quote=True)}">{escape(title)}</h2>')
        elif block.startswith("# "):
            parts.append(f"<h1>{escape(block[2:].strip())}</h1>")
        elif re.match(r"^\d+\. ", block):
            items = [_NUMBER.sub("", i) for i in re.split(r"\n(?=\d+\. )", block)]
            lis = "".join(f"<li>{_inline(' '.join(i.split()))}</li>" for i in items)
            parts.append(f"<ol>{lis}</ol>")
        else:
            parts.append(f"<p>{_inline(' '.join(block.split()))}</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


def runbooks_markdown() -> str:
    return resources.files("alerts").joinpath("runbooks.md").read_text(encoding="utf-8")


def _parse(body: bytes) -> list[ReceivedAlert]:
    """The alerts of one Grafana webhook message (``alerts[]`` with labels and annotations)."""
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    items = document.get("alerts")
    if not isinstance(items, list):
        raise ValueError("expected an 'alerts' list (Grafana's webhook payload)")
    found = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("every alert must be an object")
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        notes = {str(k): str(v) for k, v in (item.get("annotations") or {}).items()}
        found.append(ReceivedAlert(
            status=str(item.get("status", document.get("status", ""))),
            rule=labels.get("alertname", ""), labels=labels,
            summary=notes.get("summary", ""), runbook_url=notes.get("runbook_url", ""),
        ))  # fmt: skip
    return found


class Receiver:
    """The HTTP server; :meth:`serve_forever` runs it, ``received`` lists what arrived."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        state = _State()
        page = render_runbooks().encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].split("#", 1)[0]
                if path in ("/runbooks", "/runbooks/"):
                    self._answer(200, page, "text/html; charset=utf-8")
                elif path == "/healthz":
                    with state.lock:
                        count = len(state.alerts)
                    self._answer(200, json.dumps({"ok": True, "received": count}).encode(),
                                 "application/json")  # fmt: skip
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._answer(413, b"too large\n", "text/plain")
                    return
                try:
                    alerts = _parse(self.rfile.read(length))
                except ValueError as exc:  # json.JSONDecodeError is a ValueError
                    self._answer(400, f"bad webhook payload: {exc}\n".encode(), "text/plain")
                    return
                with state.lock:
                    state.alerts.extend(alerts)
                for a in alerts:
                    log.info(
                        "alert %s %s %s: %s (runbook %s)", a.status, a.rule,
                        " ".join(f"{k}={v}" for k, v in sorted(a.labels.items())
                                 if k != "alertname"),
                        a.summary, a.runbook_url or "-",
                    )  # fmt: skip
                self._answer(200, b'{"ok":true}', "application/json")

        self._state = state
        self._server = ThreadingHTTPServer((host, port), Handler)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def received(self) -> list[ReceivedAlert]:
        with self._state.lock:
            return list(self._state.alerts)

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
