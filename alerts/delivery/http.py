"""One JSON POST with bounded retries: the HTTP machinery every notifier shares.

The generic webhook, PagerDuty's Events API v2 and Slack's incoming webhooks agree on what a
retry is for: 2xx is delivered; 429, 5xx and network errors are worth another attempt (after the
server's ``Retry-After`` when it sends one); any other 4xx is a configuration or payload error
that no retry fixes. What each service says in an error body differs (PagerDuty answers JSON
with ``errors``, Slack a short string such as ``invalid_payload``), so a notifier passes a
``describe`` function that turns the body into a short reason for the log and the error.

URLs and keys are secrets: errors and log lines name the service, the HTTP status, an exception
type and the service's reason, and every secret the notifier registered is cut out of the
reason before it is shown. The HTTP client is the standard library's, which, unlike httpx,
logs nothing about the requests it sends.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from alerts.errors import NotifyError
from alerts.settings import NotifyConfig

__all__ = ["JsonPoster", "check_http_url", "retry_after"]

log = logging.getLogger(__name__)

_REASON_LIMIT = 200  # characters of a service's error reason kept in a message
_BODY_LIMIT = 4096  # bytes of an error body read


def check_http_url(url: str, setting: str) -> None:
    """Raise ``ValueError`` naming ``setting`` (never the URL, a secret) unless it is http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{setting} must be an http(s) URL")


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None when absent or a date."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _no_reason(body: bytes) -> str:
    return ""


class JsonPoster:
    """POST JSON to one URL; retry 5xx, 429 and network errors with exponential back-off.

    Attempt ``i`` (from 0) that fails is retried after ``min(backoff_s * 2**i, backoff_max_s)``
    seconds (or the server's ``Retry-After``, capped the same way), at most ``max_attempts``
    attempts in all (``settings``); then :class:`NotifyError` is raised. Any other 4xx answer is
    not retried. ``sleep`` is injectable so tests need not wait; a sleep that returns true (such
    as ``threading.Event().wait`` when the event is set on shutdown) abandons the delivery.

    ``service`` names the receiver in logs and errors; ``secrets`` are cut out of anything the
    receiver answers before it is shown; ``describe`` turns an error body into a short reason.
    """

    def __init__(
        self,
        service: str,
        url: Callable[[], str],
        settings: NotifyConfig,
        *,
        sleep: Callable[[float], object] = time.sleep,
        secrets: Iterable[str] = (),
        describe: Callable[[bytes], str] = _no_reason,
    ) -> None:
        self.service = service
        self._url = url
        self._settings = settings
        self._sleep = sleep
        # Longest first, so a secret inside another is not cut first; short strings ("/") are
        # not secrets worth hiding and would mangle every reason.
        self._secrets = tuple(sorted((s for s in secrets if len(s) >= 8), key=len, reverse=True))
        self._describe = describe
        self.sent = 0

    def post(self, payload: Mapping[str, Any], what: str) -> None:
        """Deliver ``payload``; ``what`` names the message in logs and errors (no secrets)."""
        s = self._settings
        body = json.dumps(payload, allow_nan=False).encode()
        for attempt in range(s.max_attempts):
            failure, wait = self._attempt(body)
            if failure is None:
                self.sent += 1
                log.info("%s delivered %s", self.service, what)
                return
            if not failure.retryable or attempt + 1 == s.max_attempts:
                raise NotifyError(
                    f"{self.service} could not deliver {what} after {attempt + 1} "
                    f"attempt(s): {failure}",
                    retryable=failure.retryable,
                )
            delay = min(s.backoff_s * 2**attempt, s.backoff_max_s)
            if wait is not None:
                delay = min(max(delay, wait), s.backoff_max_s)
            log.warning(
                "%s attempt %d/%d for %s failed: %s; retrying in %.2f s",
                self.service, attempt + 1, s.max_attempts, what, failure, delay,
            )  # fmt: skip
            if self._sleep(delay):
                raise NotifyError(f"delivery of {what} interrupted by shutdown", retryable=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, body: bytes) -> tuple[NotifyError | None, float | None]:
        """One attempt: ``(None, None)`` on a 2xx answer, else the failure and any Retry-After."""
        request = urllib.request.Request(  # noqa: S310 - the notifiers check the scheme
            self._url(),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "telltale-monitor"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._settings.timeout_s) as answer:  # noqa: S310
                answer.read()
                return None, None
        except urllib.error.HTTPError as exc:
            status = exc.code
            wait = retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            try:
                reason = self._reason(exc.read(_BODY_LIMIT))
            except OSError:
                reason = ""
            finally:
                exc.close()
            retryable = status >= 500 or status == 429
            text = f"HTTP {status}" + (f" ({reason})" if reason else "")
            return NotifyError(text, retryable=retryable), wait
        except (urllib.error.URLError, OSError) as exc:
            # Only the exception type: some carry the address they failed to reach.
            return NotifyError(type(exc).__name__, retryable=True), None

    def _reason(self, body: bytes) -> str:
        try:
            reason = self._describe(body)
        except ValueError:  # a body that is not what the service documents
            reason = ""
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        reason = " ".join(reason.split())
        return reason[:_REASON_LIMIT]
