"""Column-wise replay of pre-embedded Parquet logs: validation and conversion on Arrow batches.

Replaying a log whose rows carry their embeddings needs no model, so per-event Python objects
(a parsed dict, a pydantic event, row objects for three tables) are the whole cost. Here a
Parquet record batch is checked with vectorised Arrow kernels against the event contract and
converted to the columns the pipeline scores and the writer inserts, without a Python object
per event.

The check is conservative: it selects the rows it can prove valid and hands every other row to
the per-event path (:func:`streams.events.validate_event` and the model), which accepts it or
rejects it with the exact reason. So the fast path never accepts what the contract refuses, and
never rejects anything itself. A file whose columns it does not know (an unknown top-level
field, which the contract keeps in ``attributes``; an OpenTelemetry alias; a type it does not
read) goes the per-event way entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from signals import FIELDS
from streams.events import (
    EARLIEST_TIMESTAMP,
    MAX_FUTURE_SKEW,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    SESSION_ID_KEYS,
    TOP_LEVEL_FIELDS,
    USER_ID_KEYS,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from numpy.typing import NDArray

__all__ = ["ColumnarBatch", "ColumnarSink", "split_batch"]

_TOP = TOP_LEVEL_FIELDS | {"embeddings"}
_RFC3339 = r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"


@dataclass(frozen=True)
class ColumnarBatch:
    """Valid events as columns, plus their carried vectors per embedding field.

    ``events`` has the columns of the ``events`` table except ``embedder_id``; ``vectors[f]``
    is ``(rows, matrix)``: the indices into ``events`` of the rows with content in field ``f``
    and their vectors, one row each.
    """

    events: pa.Table
    vectors: dict[str, tuple[NDArray[np.int64], NDArray[np.float32]]]

    def __len__(self) -> int:
        return int(self.events.num_rows)


class ColumnarSink(Protocol):
    """Stores a :class:`ColumnarBatch` (the pipeline does: scores it and writes it)."""

    @property
    def embedder_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def process_columns(self, batch: ColumnarBatch) -> tuple[int, int]:
        """Store ``batch``; return (written, skipped as already stored)."""
        ...


def split_batch(
    batch: pa.RecordBatch,
    embedder_id: str,
    dim: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> tuple[ColumnarBatch | None, list[int], int]:
    """Split ``batch`` into the rows proven valid (as columns) and the rest.

    Returns ``(columns, slow, filtered_out)``: ``columns`` holds the valid rows inside
    ``since``/``until`` (None when there are none), ``slow`` the indices of rows for the
    per-event path, ``filtered_out`` how many valid rows fell outside the time range.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    everything = list(range(n))
    try:
        cols = _Columns(batch)
        ok, fields = _valid_rows(cols, embedder_id, dim, now or datetime.now(UTC))
    except _Unsupported:
        return None, everything, 0
    in_range = ok
    ts = cols.timestamp
    if since is not None:
        in_range = pc.and_kleene(in_range, pc.greater_equal(ts, pa.scalar(since, ts.type)))
    if until is not None:
        in_range = pc.and_kleene(in_range, pc.less(ts, pa.scalar(until, ts.type)))
    ok_np = _mask(ok)
    keep_np = _mask(in_range)
    slow = np.flatnonzero(~ok_np).tolist()
    filtered = int(ok_np.sum() - keep_np.sum())
    rows = np.flatnonzero(keep_np)
    if not len(rows):
        return None, slow, filtered
    take = pa.array(rows)
    events = pa.table({
        "event_id": cols.string("event_id").take(take),
        "timestamp": ts.take(take),
        "model": cols.string("model").take(take),
        "model_version": cols.string("model_version").take(take),
        "app": cols.string_or_empty("app").take(take),
        "release": cols.string_or_empty("release").take(take),
        "prompt_text": pc.fill_null(cols.text("prompt", "text"), "").take(take),
        "output_text": pc.fill_null(cols.text("output", "text"), "").take(take),
        "output_image": pa.array([""] * len(rows), pa.string()),
        "latency_ms": cols.latency().take(take),
        "input_tokens": cols.tokens("input_tokens").take(take).cast(pa.uint32()),
        "output_tokens": cols.tokens("output_tokens").take(take).cast(pa.uint32()),
        "feedback": cols.feedback().take(take),
        "attributes": cols.attributes().take(take),
        "user_id": cols.promoted("user_id", USER_ID_KEYS).take(take),
        "session_id": cols.promoted("session_id", SESSION_ID_KEYS).take(take),
    })  # fmt: skip
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    vectors = {}
    for name, (has, matrix_of) in fields.items():
        owners = np.flatnonzero(_mask(has) & keep_np)
        if len(owners):
            vectors[name] = (position[owners], matrix_of(owners))
    return ColumnarBatch(events, vectors), slow, filtered


class _Unsupported(Exception):
    """The batch has a column the fast path does not read: every row goes the per-event way."""


def _mask(array: Any) -> NDArray[np.bool_]:
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


class _Columns:
    """Typed access to the columns of one record batch; raises :class:`_Unsupported`."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        import pyarrow as pa

        names = set(batch.schema.names)
        if not names <= _TOP or len(names) != len(batch.schema.names):
            raise _Unsupported
        self._pa = pa
        self.batch = batch
        self.n = batch.num_rows
        self.timestamp = self._timestamp()

    def get(self, name: str) -> Any:
        schema = self.batch.schema
        return self.batch.column(schema.get_field_index(name)) if name in schema.names else None

    def _is_string(self, array: Any) -> bool:
        types = self._pa.types
        return bool(types.is_string(array.type) or types.is_large_string(array.type))

    def string(self, name: str) -> Any:
        """A string column (absent: all null)."""
        array = self.get(name)
        if array is None:
            return self._pa.nulls(self.n, self._pa.string())
        if not self._is_string(array):
            raise _Unsupported
        return array.cast(self._pa.string())

    def string_or_empty(self, name: str) -> Any:
        import pyarrow.compute as pc

        return pc.fill_null(self.string(name), "")

    def text(self, struct: str, child: str) -> Any:
        """``struct.child`` as a string column, null where either is missing."""
        import pyarrow.compute as pc

        array = self.get(struct)
        if array is None:
            return self._pa.nulls(self.n, self._pa.string())
        allowed = {"prompt": {"text"}, "output": {"text", "image"}}[struct]
        if not self._pa.types.is_struct(array.type):
            raise _Unsupported
        children = {array.type.field(i).name for i in range(array.type.num_fields)}
        if not children <= allowed:
            raise _Unsupported  # the contract forbids unknown fields in prompt / output
        if child not in children:
            return self._pa.nulls(self.n, self._pa.string())
        values = pc.struct_field(array, child)
        if not self._is_string(values):
            raise _Unsupported
        values = pc.if_else(pc.is_valid(array), values, self._pa.scalar(None, values.type))
        return values.cast(self._pa.string())

    def _timestamp(self) -> Any:
        import pyarrow.compute as pc

        pa = self._pa
        array = self.get("timestamp")
        if array is None:
            raise _Unsupported
        target = pa.timestamp("ms", tz="UTC")
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            return array.cast(target, safe=False)
        if not self._is_string(array):
            raise _Unsupported  # naive timestamps and numbers: the per-event path rejects them
        text = array.cast(pa.string())
        shaped = pc.match_substring_regex(text, _RFC3339)
        parsed = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
        try:
            return parsed.cast(target, safe=False)
        except pa.ArrowInvalid as exc:
            raise _Unsupported from exc

    def latency(self) -> Any:
        pa = self._pa
        array = self.get("latency_ms")
        if array is None:
            return pa.nulls(self.n, pa.float64())
        if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
            raise _Unsupported
        return array.cast(pa.float64())

    def tokens(self, child: str) -> Any:
        """``usage.child`` as an int64 column, null where absent (:func:`_valid_rows` checks
        the range; the valid rows are then cast to the table's ``UInt32``)."""
        import pyarrow.compute as pc

        pa = self._pa
        array = self.get("usage")
        if array is None:
            return pa.nulls(self.n, pa.int64())
        if not pa.types.is_struct(array.type):
            raise _Unsupported
        children = {array.type.field(i).name for i in range(array.type.num_fields)}
        if not children <= {"input_tokens", "output_tokens"}:
            raise _Unsupported  # the contract forbids unknown fields in usage
        if child not in children:
            return pa.nulls(self.n, pa.int64())
        values = pc.struct_field(array, child)
        if not pa.types.is_integer(values.type):
            raise _Unsupported  # floats, booleans, text: the per-event path says why
        values = pc.if_else(pc.is_valid(array), values, pa.scalar(None, values.type))
        if pa.types.is_unsigned_integer(values.type) and values.type.bit_width == 64:
            # uint64 above int64's range: clip to one past the limit, so the check refuses it
            values = pc.min_element_wise(values, pa.scalar(MAX_TOKENS + 1, values.type))
        return values.cast(pa.int64())

    def feedback(self) -> Any:
        pa = self._pa
        array = self.get("feedback")
        if array is None:
            return pa.nulls(self.n, pa.int8())
        if not pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
            raise _Unsupported
        return array

    def attributes(self) -> Any:
        pa = self._pa
        array = self.get("attributes")
        kind = pa.map_(pa.string(), pa.string())
        if array is None:
            return pa.array([[]] * self.n, kind)
        textual = (pa.string(), pa.large_string())
        if not (
            pa.types.is_map(array.type)
            and array.type.key_type in textual
            and array.type.item_type in textual
        ):
            raise _Unsupported
        import pyarrow.compute as pc

        return pc.fill_null(array.cast(kind), pa.scalar([], kind))

    def promoted(self, name: str, keys: tuple[str, ...]) -> Any:
        """``user_id`` / ``session_id``: the column, else the first of ``keys`` in attributes."""
        import pyarrow.compute as pc

        pa = self._pa
        value = self.string(name)
        attributes = self.get("attributes")
        if attributes is not None:
            attributes = self.attributes()
            for key in keys:
                found = pc.map_lookup(attributes, pa.scalar(key), "first")
                usable = pc.and_kleene(pc.is_null(value), pc.greater(pc.utf8_length(found), 0))
                value = pc.if_else(pc.fill_null(usable, False), found, value)
        return pc.fill_null(value, "")


def _valid_rows(
    cols: _Columns, embedder_id: str, dim: int, now: datetime
) -> tuple[Any, dict[str, tuple[Any, Any]]]:
    """The mask of rows proven valid, and per embedding field (rows with content, vectors)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def length_between(array: Any, low: int, high: int) -> Any:
        size = pc.utf8_length(array)
        return pc.and_kleene(pc.greater_equal(size, low), pc.less_equal(size, high))

    def absent_or_short(array: Any, high: int) -> Any:
        return pc.or_kleene(pc.is_null(array), pc.less_equal(pc.utf8_length(array), high))

    def non_empty(array: Any) -> Any:
        return pc.fill_null(pc.greater(pc.utf8_length(array), 0), False)

    ts = cols.timestamp
    checks = [
        length_between(cols.string("event_id"), 1, MAX_ID_CHARS),
        pc.greater_equal(ts, pa.scalar(EARLIEST_TIMESTAMP, ts.type)),
        pc.less_equal(ts, pa.scalar(now + MAX_FUTURE_SKEW, ts.type)),
        length_between(cols.string("model"), 1, MAX_LABEL_CHARS),
        length_between(cols.string("model_version"), 1, MAX_LABEL_CHARS),
    ]
    checks += [absent_or_short(cols.string(n), MAX_LABEL_CHARS)
               for n in ("app", "release", "user_id", "session_id")]  # fmt: skip
    texts = {"prompt.text": cols.text("prompt", "text"), "output.text": cols.text("output", "text")}
    image = cols.text("output", "image")
    checks += [absent_or_short(t, MAX_TEXT_CHARS) for t in texts.values()]
    checks.append(pc.invert(non_empty(image)))  # images are loaded by the per-event path
    content = pc.or_(non_empty(texts["prompt.text"]), non_empty(texts["output.text"]))
    checks.append(content)
    latency = cols.latency()
    checks.append(pc.or_kleene(pc.is_null(latency), pc.and_kleene(
        pc.greater_equal(latency, 0.0), pc.is_finite(latency))))  # fmt: skip
    for child in ("input_tokens", "output_tokens"):
        tokens = cols.tokens(child)
        checks.append(pc.or_kleene(pc.is_null(tokens), pc.and_kleene(
            pc.greater_equal(tokens, 0), pc.less_equal(tokens, MAX_TOKENS))))  # fmt: skip
    feedback = cols.feedback()
    allowed = pa.array([-1, 0, 1], feedback.type)
    checks.append(pc.or_kleene(pc.is_null(feedback), pc.is_in(feedback, allowed)))
    checks.append(_attributes_fit(cols))
    carried, same = _carried(cols, embedder_id)
    checks.append(same)
    fields: dict[str, tuple[Any, Any]] = {}
    for name, text in texts.items():
        has = non_empty(text)
        vector = carried.get(name)
        if vector is None:
            checks.append(pc.invert(has))  # content without a vector needs the model
            continue
        fits = pc.fill_null(pc.equal(pc.list_value_length(vector), dim), False)
        checks.append(pc.or_(pc.invert(has), fits))
        fields[name] = (has, _matrix_reader(vector, dim))
    ok = checks[0]
    for check in checks[1:]:
        ok = pc.and_kleene(ok, check)
    return pc.fill_null(ok, False), fields


def _attributes_fit(cols: _Columns) -> Any:
    """Rows whose attribute keys and values are within the contract's text limit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = cols.get("attributes")
    if array is None:
        return pa.array(np.ones(cols.n, dtype=bool))
    attributes = cols.attributes()
    long_rows = np.zeros(cols.n, dtype=bool)
    parents = pc.list_parent_indices(attributes).to_numpy()
    for part in (attributes.keys, attributes.items):
        too_long = _mask(pc.greater(pc.utf8_length(part), MAX_TEXT_CHARS))
        long_rows[parents[too_long]] = True
    return pa.array(~long_rows)


def _carried(cols: _Columns, embedder_id: str) -> tuple[dict[str, Any], Any]:
    """The carried vector columns, and the mask of rows that carry this embedder's vectors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = cols.get("embeddings")
    if array is None:
        return {}, pa.array(np.ones(cols.n, dtype=bool))
    if not pa.types.is_struct(array.type):
        raise _Unsupported
    children = {array.type.field(i).name: array.type.field(i).type
                for i in range(array.type.num_fields)}  # fmt: skip
    if "embedder_id" not in children:
        raise _Unsupported
    owner = pc.struct_field(array, "embedder_id")
    same = pc.fill_null(pc.and_kleene(pc.is_valid(array), pc.equal(owner, embedder_id)), False)
    vectors = {}
    for name, kind in children.items():
        if name not in FIELDS:
            continue
        listish = pa.types.is_list(kind) or pa.types.is_large_list(kind) or (
            pa.types.is_fixed_size_list(kind))  # fmt: skip
        if not listish or not pa.types.is_floating(kind.value_type):
            raise _Unsupported
        vectors[name] = pc.struct_field(array, name)
    return vectors, same


def _matrix_reader(vector: Any, dim: int) -> Any:
    """A function from row indices (all with ``dim`` values) to their float32 matrix."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def matrix(rows: NDArray[np.int64]) -> NDArray[np.float32]:
        values = pc.list_flatten(vector.take(pa.array(rows)))
        if values.null_count:
            values = pc.fill_null(values, float("nan"))
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
        return flat.reshape(len(rows), dim)

    return matrix
