"""``telltale replay`` into storage embeds the next batch ahead (TELLTALE_WORKER_EMBED_AHEAD),
not when paced or turned off; the worker's parts follow the same setting by default."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signals import EmbedAhead

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def _log(path: Path, n: int) -> Path:
    lines = [json.dumps({"event_id": f"w{i:03d}", "model": "chat", "model_version": "v1",
                         "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                         "output": {"text": f"answer {i}"}}) for i in range(n)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("env", "speed", "wrapped"), [
    ("true", "max", True), ("false", "max", False), ("true", "1000", False),
])  # fmt: skip
def test_replay_embeds_ahead_as_configured(
    tiny_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    speed: str,
    wrapped: bool,
) -> None:
    import telltale.replay as replay_module
    from telltale.settings import load_settings
    from telltale.wiring import make_parts

    monkeypatch.setenv("TELLTALE_WORKER_EMBED_AHEAD", env)
    built: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        built.append(make_parts(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(replay_module, "make_parts", spy)
    settings = load_settings().with_overrides(clickhouse=f"chdb://{tmp_path / 'db'}")
    summary = replay_module.replay_files(
        settings, [_log(tmp_path / "log.jsonl", 25)], speed=speed,
        reject_file=tmp_path / "rejects.jsonl", batch_size=10, show_progress=False,
    )  # fmt: skip
    assert (summary["written"], summary["rejected"]) == (25, 0)
    text = built[0].embedders.text
    assert isinstance(text, EmbedAhead) == wrapped
    if wrapped:  # every text stored was embedded ahead
        assert text.answered == 25


def test_make_parts_wraps_the_text_embedder_only_when_asked(
    tiny_env: dict[str, str], ch: Any
) -> None:
    from telltale.settings import load_settings
    from telltale.wiring import make_parts

    settings = load_settings()
    assert isinstance(make_parts(settings, ch, embed_ahead=True).embedders.text, EmbedAhead)
    assert not isinstance(make_parts(settings, ch).embedders.text, EmbedAhead)
    # the worker follows TELLTALE_WORKER_EMBED_AHEAD unless told otherwise
    assert isinstance(make_parts(settings, ch, worker=True).embedders.text, EmbedAhead)
    off = make_parts(settings, ch, worker=True, embed_ahead=False)
    assert not isinstance(off.embedders.text, EmbedAhead)
