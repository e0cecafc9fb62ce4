"""API keys of ``telltale serve``: ``TELLTALE_SERVE_API_KEYS``, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Sequence

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

__all__ = ["Auth", "api_key_check"]

Auth = Callable[[Request], Awaitable[None]]
"""A FastAPI dependency that raises 401 unless the request carries an accepted key."""


def api_key_check(keys: Sequence[bytes]) -> Auth:
    """A dependency that accepts ``Authorization: Bearer KEY``, ``X-API-Key: KEY`` or basic
    auth with KEY as the password; every configured key is compared in constant time."""

    def presented(request: Request) -> bytes | None:
        header = request.headers.get("x-api-key")
        if header:
            return header.encode()
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip().encode()
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            return decoded.partition(b":")[2]
        return None

    async def check(request: Request) -> None:
        if not keys:
            return
        given = presented(request)
        matched = False
        for key in keys:  # no early exit: the time taken does not depend on which key matched
            matched |= given is not None and hmac.compare_digest(given, key)
        if not matched:
            raise StarletteHTTPException(
                401,
                "missing or wrong API key" if given is None or given else "empty API key",
                headers={"WWW-Authenticate": 'Bearer, Basic realm="telltale"'},
            )

    return check
