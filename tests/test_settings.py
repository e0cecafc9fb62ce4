from __future__ import annotations

import logging

import pytest

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
