from __future__ import annotations

import ast
import inspect
import logging
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from telltale.settings import ClickHouseSettings, EmbedderSettings, KafkaSettings


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_CLICKHOUSE_DSN", "https://ch:8443")
    monkeypatch.setenv("TELLTALE_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("TELLTALE_EMBEDDER_PRETRAINED", "none")
    monkeypatch.setenv("TELLTALE_EMBEDDER_QUANTIZE", "false")
    assert ClickHouseSettings().dsn == "https://ch:8443"
    assert KafkaSettings().bootstrap == "k:9092"
    embedder = EmbedderSettings()
    assert embedder.pretrained is None and embedder.quantize is False


def test_password_is_secret_in_repr_dump_and_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TELLTALE_CLICKHOUSE_PASSWORD", "hunter2-very-secret")
    settings = ClickHouseSettings()
    assert settings.password is not None
    assert settings.password.get_secret_value() == "hunter2-very-secret"
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    assert "hunter2" not in caplog.text
    assert "hunter2" not in settings.model_dump_json()


def test_text_embedder_model_setting_and_open_clip_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from telltale.settings import (
        EmbeddingCacheSettings,
        SignalQualitySettings,
        TextEmbedderSettings,
    )

    assert TextEmbedderSettings().model == "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setenv("TELLTALE_TEXT_EMBEDDER_MODEL", "open_clip")
    monkeypatch.setenv("TELLTALE_EMBEDDING_CACHE_MEMORY_ENTRIES", "0")
    monkeypatch.setenv("TELLTALE_SIGNALS_MAX_FLAG_SHARE", "0.2")
    assert TextEmbedderSettings().uses_open_clip
    assert EmbeddingCacheSettings().memory_entries == 0
    assert SignalQualitySettings().max_flag_share == 0.2
    monkeypatch.setenv("TELLTALE_SIGNALS_MAX_FLAG_SHARE", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        SignalQualitySettings()


# --- one settings tree ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
LOWER_PACKAGES = ("signals", "streams", "storage", "alerts", "dashboards")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TELLTALE_* variable from the caller's shell leaks into a test of settings."""
    for key in list(os.environ):
        if key.startswith("TELLTALE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_every_section_reads_its_documented_variables(clean_env: pytest.MonkeyPatch) -> None:
    from alerts.settings import MonitorConfig, NotifyConfig
    from dashboards.settings import GrafanaConfig
    from signals.open_clip_embedder import EmbedderConfig
    from signals.text_embedder import TextEmbedderConfig
    from streams.settings import KafkaConfig, WorkerConfig
    from telltale.settings import load_settings

    env = {
        "TELLTALE_KAFKA_BOOTSTRAP": "kafka-1:9093",
        "TELLTALE_KAFKA_OTLP_TOPICS": "spans, logs_prod",
        "TELLTALE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TELLTALE_KAFKA_SASL_USERNAME": "svc-telltale",
        "TELLTALE_KAFKA_SASL_PASSWORD": "kafka-pass-0417",
        "TELLTALE_CLICKHOUSE_DSN": "https://ch.internal:8443",
        "TELLTALE_CLICKHOUSE_PASSWORD": "ch-pass-0417",
        "TELLTALE_EMBEDDER_MODEL_NAME": "telltale-tiny",
        "TELLTALE_EMBEDDER_PRETRAINED": "none",
        "TELLTALE_TEXT_EMBEDDER_MODEL": "open_clip",
        "TELLTALE_TEXT_EMBEDDER_WINDOW_TOKENS": "128",
        "TELLTALE_EMBEDDING_CACHE_ENABLED": "false",
        "TELLTALE_SIGNALS_MIN_F1_MARGIN": "0.2",
        "TELLTALE_IMAGES_ALLOWED_HOSTS": "cdn.example.com,*.img.example.com",
        "TELLTALE_WORKER_BATCH_SIZE": "32",
        "TELLTALE_WORKER_SIGNAL_REFRESH_S": "2.5",
        "TELLTALE_WORKER_RETRAIN_COOLDOWN_S": "120",
        "TELLTALE_SLICE_KEYS": "locale,customer_tier",
        "TELLTALE_SIGNAL_GROUPS_FILE": "groups.yaml",
        "TELLTALE_SERVE_PORT": "8123",
        "TELLTALE_SERVE_API_KEYS": "key-a,key-b",
        "TELLTALE_OTLP_MODEL_VERSION_FROM": "service.version",
        "TELLTALE_MONITOR_INTERVAL_S": "15",
        "TELLTALE_MONITOR_SPIKE_WEEKEND_DAYS": "[4, 5]",
        "TELLTALE_MONITOR_CUSUM_DELTA": "0.02",
        "TELLTALE_NOTIFY_FORMAT": "slack",
        "TELLTALE_NOTIFY_WEBHOOK_URL": "https://hooks.example/T0/secret-path",
        "TELLTALE_GRAFANA_URL": "https://grafana.example/",
        "TELLTALE_GRAFANA_TOKEN": "glsa_token_0417",
        "TELLTALE_GRAFANA_ORG_ID": "3",
    }
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = load_settings()

    # each section is the model its package declares (what the package's code accepts)
    assert isinstance(settings.kafka, KafkaConfig) and isinstance(settings.worker, WorkerConfig)
    assert isinstance(settings.embedder, EmbedderConfig)
    assert isinstance(settings.text_embedder, TextEmbedderConfig)
    assert isinstance(settings.monitor, MonitorConfig)
    assert isinstance(settings.notify, NotifyConfig)
    assert isinstance(settings.grafana, GrafanaConfig)

    assert settings.kafka.bootstrap == "kafka-1:9093"
    assert settings.kafka.otlp_topics == ("spans", "logs_prod")
    security = settings.kafka.security
    assert security.sasl and security.tls and security.username == "svc-telltale"
    assert settings.clickhouse.dsn == "https://ch.internal:8443"
    assert settings.embedder.model_name == "telltale-tiny" and settings.embedder.pretrained is None
    assert settings.text_embedder.uses_open_clip and settings.text_embedder.window_tokens == 128
    assert settings.cache.enabled is False
    assert settings.signal_quality.min_f1_margin == 0.2
    assert settings.images.allowed_hosts == ("cdn.example.com", "*.img.example.com")
    assert settings.worker.batch_size == 32 and settings.worker.signal_refresh_s == 2.5
    assert settings.worker.retrain_cooldown_s == 120
    assert settings.slices.keys == ("app", "locale", "customer_tier")
    assert settings.groups.groups_file == Path("groups.yaml")
    assert settings.serve.port == 8123 and settings.serve.key_list() == [b"key-a", b"key-b"]
    assert settings.otlp.model_version_from == ("service.version",)
    assert settings.monitor.interval_s == 15.0
    # the detector settings' older names (SPIKE_, CUSUM_) still work
    assert settings.monitor.release_spike.weekend_days == (4, 5)
    assert settings.monitor.degradation.delta == 0.02
    assert settings.notify.format == "slack" and settings.notify.enabled
    assert settings.grafana.url == "https://grafana.example" and settings.grafana.org_id == 3

    # secrets stay secret in the whole tree's repr and JSON
    shown = repr(settings) + settings.model_dump_json()
    for secret in ("kafka-pass-0417", "ch-pass-0417", "key-a", "secret-path", "glsa_token_0417"):
        assert secret not in shown


def test_every_variable_the_readme_names_is_a_setting() -> None:
    """The TELLTALE_* names of the README and the docs pages each map onto a field of a section
    (prefix + field), onto the image tower's own name of an open_clip field, or onto the older
    name of a detector setting that is still accepted."""
    from alerts import LEGACY_PREFIXES
    from telltale.settings import (
        _SECTIONS,
        IMAGE_ENV_PREFIX,
        IMAGE_FIELDS_PREFIX,
        EmbedderSettings,
        MonitorSettings,
    )

    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    documented = set(re.findall(r"TELLTALE_[A-Z0-9_]+", text))
    documented.discard("TELLTALE_TEST_KAFKA")  # the test suite's own switch, not a setting
    assert len(documented) > 50
    known = {
        str(section.model_config.get("env_prefix")) + field.upper()
        for section in _SECTIONS.values()
        for field in section.model_fields
    }
    known |= {
        f"TELLTALE_MONITOR_{legacy}{field[len(prefix) :]}".upper()
        for field in MonitorSettings.model_fields
        for prefix, legacy in LEGACY_PREFIXES.items()
        if field.startswith(prefix)
    }
    known |= {  # the image tower's own names (telltale.settings._ImageTowerEnv)
        f"{IMAGE_ENV_PREFIX}{field[len(IMAGE_FIELDS_PREFIX) :]}".upper()
        for field in EmbedderSettings.model_fields
        if field.startswith(IMAGE_FIELDS_PREFIX)
    }
    assert sorted(documented - known) == []


def test_detector_settings_answer_to_their_stored_names_and_older_ones(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """One name per detector: ``TELLTALE_MONITOR_DEGRADATION_*`` (and ``RELEASE_SPIKE_``,
    ``PROMPT_DRIFT_``); the older ``CUSUM_``, ``SPIKE_``, ``DRIFT_`` names still work, and the
    current name wins where both are set."""
    from telltale.settings import load_settings

    clean_env.setenv("TELLTALE_MONITOR_DEGRADATION_DELTA", "0.03")
    clean_env.setenv("TELLTALE_MONITOR_CUSUM_DELTA", "0.04")
    clean_env.setenv("TELLTALE_MONITOR_CUSUM_ARL0_MINUTES", "5000")
    clean_env.setenv("TELLTALE_MONITOR_RELEASE_SPIKE_ALPHA", "0.02")
    clean_env.setenv("TELLTALE_MONITOR_DRIFT_CATCHUP_LOOKS", "7")
    clean_env.setenv("TELLTALE_MONITOR_PROMPT_DRIFT_REFERENCE_DAYS", "3")
    monitor = load_settings().monitor
    assert monitor.degradation.delta == 0.03
    assert monitor.degradation.arl0_minutes == 5000.0
    assert monitor.release_spike.alpha == 0.02
    assert monitor.prompt_drift_catchup_looks == 7
    assert monitor.prompt_drift.reference_days == 3


def test_env_bindings_declare_no_field_of_their_own() -> None:
    """Each package's model is the one declaration: the binding adds only the prefix."""
    from telltale.settings import (
        EmbedderSettings,
        GrafanaSettings,
        KafkaSettings,
        MonitorSettings,
        NotifySettings,
        OtlpSettings,
        SliceSettings,
        TextEmbedderSettings,
        WorkerSettings,
    )

    for binding in (EmbedderSettings, GrafanaSettings, KafkaSettings, MonitorSettings,
                    NotifySettings, OtlpSettings, SliceSettings, TextEmbedderSettings,
                    WorkerSettings):  # fmt: skip
        [package_model] = [b for b in binding.__bases__ if b.__module__ != "pydantic_settings.main"]
        assert not package_model.__module__.startswith("telltale")
        assert set(binding.model_fields) == set(package_model.model_fields)
        assert not inspect.get_annotations(binding)


def test_cli_options_win_over_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from telltale.cli import app
    from telltale.settings import load_settings

    clean_env.setenv("TELLTALE_CLICKHOUSE_DSN", f"chdb://{tmp_path / 'from-env'}")
    clean_env.setenv("TELLTALE_CLICKHOUSE_DATABASE", "default")
    clean_env.setenv("TELLTALE_KAFKA_BOOTSTRAP", "env-broker:9092")
    clean_env.setenv("TELLTALE_KAFKA_TOPIC", "prod.generations")
    result = CliRunner().invoke(
        app, ["migrate", "--clickhouse", f"chdb://{tmp_path / 'from-flag'}", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-flag").exists() and not (tmp_path / "from-env").exists()

    base = load_settings()
    overridden = base.with_overrides(clickhouse="chdb://elsewhere", kafka="flag-broker:9092")
    assert overridden.clickhouse.dsn == "chdb://elsewhere"
    assert overridden.clickhouse.database == "default"  # the rest of the section stays
    assert overridden.kafka.bootstrap == "flag-broker:9092"
    assert overridden.kafka.topic == "prod.generations"
    assert base.kafka.bootstrap == "env-broker:9092"  # the invocation's settings are untouched
    assert base.with_overrides() is base


def test_a_bad_variable_is_one_line_naming_it_without_its_value(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from telltale.cli import app

    clean_env.setenv("TELLTALE_WORKER_BATCH_SIZE", "0")
    clean_env.setenv("TELLTALE_NOTIFY_WEBHOOK_URL", "https://hooks.example/secret-path")
    clean_env.setenv("TELLTALE_NOTIFY_MAX_ATTEMPTS", "500")
    result = CliRunner().invoke(app, ["migrate", "--clickhouse", f"chdb://{tmp_path / 'db'}"])
    assert result.exit_code == 1
    assert "TELLTALE_WORKER_BATCH_SIZE" in result.output
    assert "TELLTALE_NOTIFY_MAX_ATTEMPTS" in result.output
    assert "secret-path" not in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "db").exists()  # nothing ran


def test_nothing_below_telltale_reads_the_environment() -> None:
    """No module of the five packages imports pydantic_settings or touches os.environ/getenv
    (import-linter's contract covers the first for `make lint`; this covers both)."""
    offenders = []
    for package in LOWER_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [
                        f"{node.module}.{alias.name}" for alias in node.names
                    ]
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    names = [f"{node.value.id}.{node.attr}"]
                for name in names:
                    if name.startswith("pydantic_settings") or name in (
                        "os.environ", "os.getenv", "os.putenv", "os.environb",
                    ):  # fmt: skip
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert offenders == []


def test_sample_settings_reach_the_worker_pipeline_only(
    monkeypatch: pytest.MonkeyPatch, tiny_env: dict[str, str], ch: object
) -> None:
    from telltale.settings import load_settings
    from telltale.wiring import make_parts

    monkeypatch.setenv("TELLTALE_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("TELLTALE_SAMPLE_MAX_EVENTS_PER_S", "50")
    monkeypatch.setenv("TELLTALE_SAMPLE_SALT", "s1")
    settings = load_settings()
    assert (settings.sampling.rate, settings.sampling.max_events_per_s) == (0.25, 50.0)
    assert settings.sampling.version_floor_per_min == 30.0 and settings.sampling.salt == "s1"
    worker = make_parts(settings, ch, worker=True).pipeline.sampler  # type: ignore[arg-type]
    assert worker is not None and worker.config == settings.sampling
    # replay and the guardrail API build their pipeline without worker=True: no sampler
    assert make_parts(settings, ch).pipeline.sampler is None  # type: ignore[arg-type]
    monkeypatch.setenv("TELLTALE_SAMPLE_RATE", "1.5")
    with pytest.raises(ValueError, match="sampling"):
        load_settings()
