"""The stored-id lookup finds exactly the stored ids, whatever characters they hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storage.rows import EventRow, WriteBatch
from storage.writer import ClickHouseWriter

IDS = ["plain", 'quo"te', "back\\slash", "new\nline", "nul\x00byte", "emoji 😀", "tab\tx",
       "ünï", "'single'", "{ids:String}", "\u2028sep", "[\"x\"]", "a" * 256]  # fmt: skip


def test_existing_event_ids_with_hostile_ids_and_many_chunks(ch: Any) -> None:
    writer = ClickHouseWriter(ch)
    many = [f"bulk-{i:05d}" for i in range(12_000)]  # more than one lookup chunk
    now = datetime.now(UTC)
    writer.write(WriteBatch(events=[EventRow(i, now, "m", "v") for i in IDS + many[::2]]))
    asked = [*IDS, *many, "absent", "new\\nline", 'quo\\"te', ""]
    assert writer.existing_event_ids(asked) == set(IDS) | set(many[::2])
