"""Pseudonymous user and session ids: keyed one-way hashes applied before anything is stored.

With a key configured (``TELLTALE_PRIVACY_ID_KEY``), every ``user_id`` and ``session_id`` —
and the attributes they may be promoted from (``user.id``, ``enduser.id``, ``session.id``,
``gen_ai.conversation.id``) — is replaced by ``HMAC-SHA-256(key, id)``, truncated to 128 bits
and written ``ps_`` + base32. The same id always maps to the same pseudonym, so units
(one user's retries count once), slices and joins work unchanged; without the key an id
cannot be recovered (the hash is keyed, so a list of candidate e-mail addresses cannot be
hashed and matched). The key is a :class:`~pydantic.SecretStr`: it is never printed,
logged or part of a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from streams.events import SESSION_ID_KEYS, USER_ID_KEYS

if TYPE_CHECKING:
    from streams.events import GenerationEvent

__all__ = ["ID_ATTRIBUTES", "PSEUDONYM_PREFIX", "Pseudonyms"]

PSEUDONYM_PREFIX = "ps_"
ID_ATTRIBUTES = frozenset((*USER_ID_KEYS, *SESSION_ID_KEYS))
"""Attribute keys that hold a user or session id (the keys ids are promoted from)."""

_BYTES = 16  # 128 bits: collisions are negligible for any realistic number of users


class Pseudonyms:
    """Keyed pseudonyms for ids. ``Pseudonyms(key)(value)`` is the stored form of ``value``."""

    def __init__(self, key: SecretStr) -> None:
        secret = key.get_secret_value().encode("utf-8")
        if len(secret) < 16:
            raise ValueError("the pseudonym key must be at least 16 characters")
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied per id

    def __repr__(self) -> str:
        return "Pseudonyms(key=SecretStr('**********'))"

    def __call__(self, value: str) -> str:
        """The pseudonym of ``value``; an empty id stays empty (there is nobody to protect)."""
        if not value:
            return value
        mac = self._keyed.copy()
        mac.update(value.encode("utf-8"))
        digest = mac.digest()[:_BYTES]
        return PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii").rstrip("=").lower()

    def attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """``attributes`` with the values of id keys replaced by their pseudonyms."""
        return {k: self(v) if k in ID_ATTRIBUTES and isinstance(v, str) else v
                for k, v in attributes.items()}  # fmt: skip

    def event(self, event: GenerationEvent) -> GenerationEvent:
        """``event`` with its ids and id attributes pseudonymised."""
        if not (event.user_id or event.session_id or ID_ATTRIBUTES & event.attributes.keys()):
            return event
        return event.model_copy(update={
            "user_id": self(event.user_id) if event.user_id else event.user_id,
            "session_id": self(event.session_id) if event.session_id else event.session_id,
            "attributes": self.attributes(event.attributes),
        })  # fmt: skip
