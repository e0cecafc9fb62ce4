"""Secrets never appear in logs, errors or ``--format json`` output.

The ClickHouse password arrives as ``TELLTALE_CLICKHOUSE_PASSWORD`` or inside the DSN (in the
userinfo, percent-encoded, or as a query parameter). Every path that can print it is driven
with a server that is not there (127.0.0.1:1, loopback only): the CLI's error line and JSON
output, every log record at DEBUG (with tracebacks and their chained causes), the exception
chain a caller would log, and a real worker subprocess that cannot reach its database.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from testenv import TINY_ENV
from typer.testing import CliRunner

from storage.client import connect, redact_dsn
from storage.errors import StorageError
from telltale.cli import app
from telltale.settings import ClickHouseSettings

SECRET = "Sup3r-SECRET-hunter2"
ENV_SECRET = "env-only-SECRET-pw-42"
# The forms a secret can take once it has been through a URL parser or a log formatter.
FORMS = (SECRET, quote(SECRET, safe=""), ENV_SECRET, "hunter2", "pw-42")

DSNS = [
    f"http://alice:{SECRET}@127.0.0.1:1",
    f"https://alice:{SECRET}@127.0.0.1:1/telltale",
    f"clickhouse://alice:{SECRET}@127.0.0.1:1/db",
    f"http://alice:{quote('p@ss:' + SECRET, safe='')}@127.0.0.1:1",
    f"http://127.0.0.1:1/?user=alice&password={SECRET}",
    f"http://alice:{SECRET}@[::1",  # unparseable
]


def assert_clean(text: str, where: str) -> None:
    for form in FORMS:
        assert form not in text, f"secret {form!r} leaked in {where}:\n{text[-2000:]}"


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would write it, tracebacks and causes included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.mark.parametrize("dsn", DSNS)
def test_redact_dsn_hides_every_form_of_a_password(dsn: str) -> None:
    redacted = redact_dsn(dsn)
    assert_clean(redacted, "redact_dsn")
    assert "127.0.0.1" in redacted or "***" in redacted


@pytest.mark.parametrize("dsn", DSNS)
def test_connect_errors_and_their_causes_do_not_carry_the_secret(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError) as info:
        connect(dsn)
    assert_clean("".join(traceback.format_exception(info.value)), "the exception chain")
    assert_clean(repr(info.value), "repr")
    assert_clean(log_text(caplog), "logs")


def test_password_from_the_environment_never_shows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TELLTALE_CLICKHOUSE_PASSWORD", ENV_SECRET)
    settings = ClickHouseSettings(dsn="http://alice@127.0.0.1:1")
    assert_clean(repr(settings) + str(settings) + settings.model_dump_json(), "settings")
    with pytest.raises(StorageError) as info:
        connect(settings.dsn, settings.password)
    assert_clean("".join(traceback.format_exception(info.value)), "the exception chain")
    assert_clean(log_text(caplog), "logs")
    assert isinstance(settings.password, SecretStr)


@pytest.mark.parametrize("dsn", DSNS)
@pytest.mark.parametrize("verbose", [False, True])
def test_cli_json_and_errors_do_not_print_the_secret(
    dsn: str, verbose: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TELLTALE_CLICKHOUSE_PASSWORD", ENV_SECRET)
    args = ["--verbose"] if verbose else []
    args += ["rates", "--clickhouse", dsn, "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # a clean failure, not a crash
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_clean(result.stdout, "stdout")
    assert_clean(result.stderr, "stderr")
    assert_clean(log_text(caplog), "logs")
    assert "cannot open ClickHouse" in result.stderr or "cannot" in result.stderr


@pytest.mark.integration
def test_worker_that_cannot_reach_clickhouse_does_not_log_the_secret(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **TINY_ENV,
        "TELLTALE_CLICKHOUSE_PASSWORD": ENV_SECRET,
        "TELLTALE_KAFKA_TOPIC": f"secrets-{os.getpid()}-{time.monotonic_ns()}",
        "TELLTALE_KAFKA_GROUP_ID": f"secrets-{os.getpid()}-{time.monotonic_ns()}",
        "TELLTALE_KAFKA_SESSION_TIMEOUT_S": "6",
        "TELLTALE_WORKER_LOG_LEVEL": "debug",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "telltale.cli", "--verbose", "worker",
                "--clickhouse", f"http://alice:{SECRET}@127.0.0.1:1", "--kafka", kafka_bootstrap,
            ],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if "cannot open ClickHouse" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert "cannot open ClickHouse at http://alice:***@127.0.0.1:1" in text, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # only the PID started here
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert_clean(log.read_text(errors="replace"), "the worker's log")
