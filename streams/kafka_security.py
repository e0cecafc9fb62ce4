"""How every Kafka client of telltale authenticates: SASL (PLAIN, SCRAM-SHA-256/512) and TLS.

One frozen :class:`KafkaSecurity`, built from settings in the composition root, gives the
options of each client library: kafka-python (the Emitter, replay, signal publishing, tests),
aiokafka through faust (the worker). The password is a :class:`~pydantic.SecretStr`: it is
unwrapped only when a client is built, and never appears in a ``repr`` or a log line.

kafka-python 3 does not turn a broker's SCRAM rejection (``e=invalid-proof``,
``e=unknown-user``) into an error: it drops the connection and retries until its bootstrap
times out. :func:`check_credentials` therefore runs the SASL exchange once itself, with the
same settings, and raises :class:`KafkaAuthError` naming the user and mechanism; the worker
and the Emitter call it before they start, so a wrong password stops them at once and nothing
is consumed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from streams.errors import StreamError

__all__ = ["KafkaAuthError", "KafkaSecurity", "check_credentials"]

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaAuthError(StreamError):
    """The broker refused the configured credentials or TLS settings."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Security settings shared by every Kafka client (default: plaintext, no auth)."""

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """For error messages and logs: never the password."""
        if self.sasl:
            return f"{self.protocol} {self.mechanism} as user {self.username!r}"
        return self.protocol

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (CA file, optional client certificate), or ``None`` without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        context.check_hostname = self.check_hostname
        if self.certfile:
            password = self.key_password.get_secret_value() if self.key_password else None
            context.load_cert_chain(self.certfile, self.keyfile, password)
        return context

    def kafka_python(self) -> dict[str, Any]:
        """Options for kafka-python's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password.get_secret_value() if self.password else None,
            )
        return options

    def faust_credentials(self) -> Any:
        """faust's credentials object for the worker's aiokafka clients (``None``: plaintext)."""
        if self.protocol == "PLAINTEXT":
            return None
        import faust
        from faust.types.auth import SASLMechanism

        if not self.sasl:
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            mechanism=SASLMechanism(self.mechanism),
            ssl_context=self.ssl_context(),
        )


def check_credentials(bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0) -> None:
    """Connect to the first bootstrap broker and authenticate once, or raise why not.

    Raises :class:`KafkaAuthError` when TLS verification fails or the broker rejects the SASL
    credentials; an unreachable broker is left to the client's own retries (it is not an
    authentication problem). Does nothing for plaintext without SASL.
    """
    if security.protocol == "PLAINTEXT":
        return
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
    except OSError:
        return
    sock: socket.socket = raw
    try:
        if security.tls:
            context = security.ssl_context()
            assert context is not None
            try:
                sock = context.wrap_socket(raw, server_hostname=host.strip("[]"))
            except (ssl.SSLError, OSError) as exc:
                raise KafkaAuthError(
                    f"TLS connection to {bootstrap} failed ({security.describe()}): {exc}"
                ) from exc
        if security.sasl:
            _sasl(_Connection(sock), security, bootstrap)
    finally:
        sock.close()


class _Connection:
    """Just enough of the Kafka wire protocol for SaslHandshake and SaslAuthenticate."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._correlation = 0

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        self._correlation += 1
        client = b"telltale"
        header = struct.pack(">hhih", api_key, version, self._correlation, len(client)) + client
        frame = header + body
        self._sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        return response[4:]  # drop the correlation id

    def _read(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = self._sock.recv(n - got)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _sasl(conn: _Connection, security: KafkaSecurity, bootstrap: str) -> None:
    who = security.describe()
    try:
        response = conn.request(17, 1, _string(security.mechanism))  # SaslHandshake v1
    except (ConnectionError, OSError, struct.error) as exc:
        # Some brokers (Tansu) hang up instead of answering UNSUPPORTED_SASL_MECHANISM.
        raise KafkaAuthError(
            f"broker {bootstrap} closed the connection at the SASL handshake for "
            f"{security.mechanism}: it does not offer that mechanism or SASL on this listener "
            "(check TELLTALE_KAFKA_SASL_MECHANISM and TELLTALE_KAFKA_SECURITY_PROTOCOL)"
        ) from exc
    try:
        error = struct.unpack(">h", response[:2])[0]
        if error:
            raise KafkaAuthError(
                f"broker {bootstrap} does not offer SASL mechanism {security.mechanism} "
                f"(error code {error}); check TELLTALE_KAFKA_SASL_MECHANISM"
            )
        password = security.password.get_secret_value() if security.password else ""
        username = security.username or ""
        if security.mechanism == "PLAIN":
            _authenticate(conn, f"\0{username}\0{password}".encode(), who, bootstrap)
            return
        _scram(conn, security.mechanism, username, password, who, bootstrap)
    except (ConnectionError, OSError, struct.error) as exc:
        raise KafkaAuthError(
            f"broker {bootstrap} closed the connection during SASL authentication ({who}): "
            f"{type(exc).__name__}"
        ) from exc


def _authenticate(conn: _Connection, payload: bytes, who: str, bootstrap: str) -> bytes:
    body = struct.pack(">i", len(payload)) + payload
    response = conn.request(36, 0, body)  # SaslAuthenticate v0
    error = struct.unpack(">h", response[:2])[0]
    size = struct.unpack(">h", response[2:4])[0]
    message = response[4 : 4 + size].decode(errors="replace") if size > 0 else ""
    rest = response[4 + max(size, 0) :]
    data = rest[4 : 4 + struct.unpack(">i", rest[:4])[0]] if len(rest) >= 4 else b""
    if error:
        raise KafkaAuthError(f"authentication to {bootstrap} failed ({who}): {message or error}")
    return data


def _scram(
    conn: _Connection, mechanism: str, username: str, password: str, who: str, bootstrap: str
) -> None:
    """RFC 5802 client side, as Kafka runs it (no channel binding)."""
    digest = "sha256" if mechanism == "SCRAM-SHA-256" else "sha512"
    nonce = base64.b64encode(os.urandom(18)).decode()
    name = username.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = _authenticate(conn, f"n,,{first_bare}".encode(), who, bootstrap).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
    if "e" in fields:
        raise KafkaAuthError(f"authentication to {bootstrap} failed ({who}): {fields['e']}")
    salted = hashlib.pbkdf2_hmac(
        digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored = hashlib.new(digest, client_key).digest()
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored, auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    server_final = _authenticate(
        conn, f"{final_bare},p={proof.decode()}".encode(), who, bootstrap
    ).decode()
    result = dict(item.split("=", 1) for item in server_final.split(",") if "=" in item)
    if "e" in result:
        raise KafkaAuthError(
            f"authentication to {bootstrap} failed ({who}): the broker says {result['e']!r} "
            "(wrong username or password?)"
        )
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    expected = hmac.new(server_key, auth_message, digest).digest()
    if base64.b64decode(result.get("v", "")) != expected:
        raise KafkaAuthError(f"broker {bootstrap} failed to prove it knows the password ({who})")
