"""The GenAI conventions telltale reads, as data: one row of :data:`CONVENTIONS` per convention.

A row says how a span is recognised as a generation, which attributes give the model, its
version, the provider, tokens, user and session, and where the prompt and output text are
(a JSON messages attribute, indexed keys, span events, plain values). Content is taken from the
first row, in table order, whose source has any; its name becomes the event's
``otel.convention``. Adding a convention is adding a row here: the extractor
(:mod:`streams.otlp.extract`) and the documentation's table (:mod:`streams.otlp.markdown`) read
it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streams.otlp.messages import indexed, message_list, messages_or_text, output_of, prompt_of
from streams.otlp.messages import text as as_text

__all__ = [
    "CONVENTIONS",
    "ContentSource",
    "Convention",
    "Extracted",
    "IndexedMessages",
    "IndexedParts",
    "JsonMessages",
    "PlainValues",
    "Recognition",
    "SpanEvent",
    "SpanEvents",
    "TextOrMessages",
    "recognitions",
    "union",
]

Extracted = tuple[str, str, str]  # prompt text, output text, output image
SpanEvent = tuple[str, Mapping[str, Any]]  # a span event: name, attributes


@dataclass(frozen=True)
class Recognition:
    """How a span says whether it is a generation: the value of one attribute.

    A *deciding* recognition (``not_a_generation`` set) settles it whenever its key is set: a
    value in ``values`` is a generation, any other is skipped with that reason (``{value!r}``
    is the value). One without a reason only admits: no match looks further. Rows that
    recognise by the same key add their values to the first one's."""

    key: str
    values: frozenset[str]
    not_a_generation: str = ""
    upper: bool = False  # compare the value upper-cased
    null_decides: bool = False  # a null value (an empty AnyValue) is set too


class ContentSource(Protocol):
    """Where one convention keeps the prompt and output."""

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class JsonMessages:
    """A message list in one attribute each for input and output (JSON, or structured)."""

    input_key: str
    output_key: str
    prompt_role: str = "user"

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted:
        inputs = message_list(attrs.get(self.input_key), self.input_key)
        outputs = message_list(attrs.get(self.output_key), self.output_key)
        return prompt_of(inputs, self.prompt_role), *output_of(outputs)

    def describe(self) -> str:
        return f"`{self.input_key}` / `{self.output_key}` (JSON string or structured attribute)"


@dataclass(frozen=True)
class IndexedParts:
    """Parts of an indexed message under ``<message>.<prefix>.M.``: text and image URL."""

    prefix: str
    text: str
    image_url: str

    def part(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        part: dict[str, Any] = {}
        for suffix, value in fields.items():
            if suffix == self.text:
                part.update(type="text", content=value)
            elif suffix == self.image_url:
                part.update(type="uri", modality="image", uri=value)
        return part


@dataclass(frozen=True)
class IndexedMessages:
    """One message per index: ``<input_prefix>.N.<role>`` / ``.<content>`` (and with
    ``parts``, ``.<parts.prefix>.M.<parts.text>`` ...), output likewise."""

    input_prefix: str
    output_prefix: str
    role: str = "role"
    content: str = "content"
    parts: IndexedParts | None = None  # None: the content is the message's, whatever its shape
    prompt_role: str = "user"

    def messages(self, attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
        if self.parts is None:
            found = indexed(attrs, prefix, (self.role, self.content))
            if (self.role, self.content) == ("role", "content"):
                return found
            names = {self.role: "role", self.content: "content"}
            return [{names[s]: v for s, v in fields.items()} for fields in found]
        messages = []
        for fields in indexed(attrs, prefix):
            parts = [{"type": "text", "content": fields[self.content]}] if (
                self.content in fields) else []  # fmt: skip
            parts += [self.parts.part(p) for p in indexed(fields, self.parts.prefix)]
            messages.append({"role": fields.get(self.role, ""), "parts": parts})
        return messages

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted:
        inputs = self.messages(attrs, self.input_prefix)
        outputs = self.messages(attrs, self.output_prefix)
        return prompt_of(inputs, self.prompt_role), *output_of(outputs)

    def describe(self) -> str:
        keys = [f"`{self.input_prefix}.N.{self.role}`", f"`.{self.content}`"]
        if self.parts is not None:
            keys.append(f"`.{self.parts.prefix}.M.{self.parts.text}`")
            keys.append(f"`.{self.parts.image_url}`")
        return "/".join(keys) + f", `{self.output_prefix}.N...`"


@dataclass(frozen=True)
class SpanEvents:
    """Span events carrying the prompt and the completion (a JSON message list or text)."""

    prompt_event: str
    prompt_key: str
    completion_event: str
    completion_key: str
    prompt_role: str = "user"

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted:
        prompt: list[dict[str, Any]] = []
        completion: list[dict[str, Any]] = []
        for name, attributes in events:
            if name == self.prompt_event:
                prompt += messages_or_text(attributes.get(self.prompt_key), self.prompt_key)
            elif name == self.completion_event:
                key = self.completion_key
                completion += messages_or_text(attributes.get(key), key)
        return prompt_of(prompt, self.prompt_role), *output_of(completion)

    def describe(self) -> str:
        return (f"event `{self.prompt_event}` with `{self.prompt_key}`, event "
                f"`{self.completion_event}` with `{self.completion_key}` "
                "(a JSON message list or plain text)")  # fmt: skip


@dataclass(frozen=True)
class TextOrMessages:
    """One attribute each for prompt and completion: a JSON message list or plain text."""

    input_key: str
    output_key: str
    prompt_role: str = "user"

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted:
        prompt = messages_or_text(attrs.get(self.input_key), self.input_key)
        completion = messages_or_text(attrs.get(self.output_key), self.output_key)
        return prompt_of(prompt, self.prompt_role), *output_of(completion)

    def describe(self) -> str:
        return f"`{self.input_key}` / `{self.output_key}` (a JSON message list or plain text)"


@dataclass(frozen=True)
class PlainValues:
    """The whole input and output as one value each, taken as text."""

    input_key: str
    output_key: str

    def read(self, attrs: Mapping[str, Any], events: Sequence[SpanEvent]) -> Extracted:
        return _plain(attrs.get(self.input_key)), _plain(attrs.get(self.output_key)), ""

    def describe(self) -> str:
        return f"`{self.input_key}` / `{self.output_key}` (as text)"


def _plain(value: Any) -> str:
    return "" if value is None else as_text(value)


@dataclass(frozen=True)
class Convention:
    """One convention: how its spans are recognised and where its fields are."""

    name: str  # the event's ``otel.convention`` when this row supplied the content
    title: str  # who writes it
    content: ContentSource | None = None
    recognised_by: Recognition | None = None
    log_event: str = ""  # a log record of this name is a generation unless recognised otherwise
    model_keys: tuple[str, ...] = ()
    model_version_keys: tuple[str, ...] = ()  # the default of TELLTALE_OTLP_MODEL_VERSION_FROM
    provider_keys: tuple[str, ...] = ()
    input_token_keys: tuple[str, ...] = ()  # event usage.input_tokens
    output_token_keys: tuple[str, ...] = ()  # event usage.output_tokens
    user_keys: tuple[str, ...] = ()
    session_keys: tuple[str, ...] = ()
    app_keys: tuple[str, ...] = ()  # on the span or log record
    resource_app_keys: tuple[str, ...] = ()  # on the resource (tried before ``app_keys``)
    image_keys: tuple[str, ...] = ()  # an output image when the content has none
    kept_keys: tuple[str, ...] = ()  # more attributes kept on the event

    def kept(self) -> tuple[str, ...]:
        """Every attribute of this row that the event keeps in ``attributes`` (token counts go
        to ``usage``; one that is not a count is kept in ``attributes`` instead, by the
        extractor)."""
        return (*self.provider_keys, *self.user_keys, *self.session_keys,
                *self.kept_keys)  # fmt: skip


_OPERATION = "gen_ai.operation.name"
_NOT_GENERATION = "gen_ai operation {value!r} is not a generation"

# Order matters: content comes from the first row whose source has any, and keys that several
# rows name are tried in row order.
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "gen_ai.messages", "OpenTelemetry GenAI semantic conventions ≥ 1.37",
        content=JsonMessages("gen_ai.input.messages", "gen_ai.output.messages"),
        recognised_by=Recognition(_OPERATION, frozenset({
            "chat", "text_completion", "generate_content", "completion"}), _NOT_GENERATION),
        log_event="gen_ai.client.inference.operation.details",
        model_keys=("gen_ai.request.model", "gen_ai.response.model"),
        model_version_keys=("gen_ai.response.model", "gen_ai.prompt.version"),
        provider_keys=("gen_ai.provider.name", "gen_ai.system"),
        input_token_keys=("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        output_token_keys=("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        session_keys=("gen_ai.conversation.id",),
        kept_keys=(_OPERATION, "gen_ai.response.id", "gen_ai.response.finish_reasons",
                   "gen_ai.request.temperature", "gen_ai.request.max_tokens"),
    ),
    Convention(
        "gen_ai.prompt.indexed", "OpenLLMetry (Traceloop), semantic conventions < 1.37",
        content=IndexedMessages("gen_ai.prompt", "gen_ai.completion"),
        recognised_by=Recognition("llm.request.type", frozenset({"chat", "completion"})),
    ),
    Convention(
        "gen_ai.content.events", "semantic conventions < 1.37 span events, OpenLIT",
        content=SpanEvents("gen_ai.content.prompt", "gen_ai.prompt",
                           "gen_ai.content.completion", "gen_ai.completion"),
    ),
    Convention(
        "gen_ai.prompt.attributes", "semantic conventions < 1.37 attributes",
        content=TextOrMessages("gen_ai.prompt", "gen_ai.completion"),
    ),
    Convention(
        "openinference.messages", "OpenInference (Arize Phoenix)",
        content=IndexedMessages(
            "llm.input_messages", "llm.output_messages", role="message.role",
            content="message.content", parts=IndexedParts(
                "message.contents", "message_content.text", "message_content.image.image.url"),
        ),
        recognised_by=Recognition("openinference.span.kind", frozenset({"LLM"}),
                                  "OpenInference span kind is not LLM", upper=True,
                                  null_decides=True),
        model_keys=("llm.model_name",),
        provider_keys=("llm.provider", "llm.system"),
        input_token_keys=("llm.token_count.prompt",),
        output_token_keys=("llm.token_count.completion",),
        kept_keys=("openinference.span.kind",),
    ),
    Convention(
        "openinference.values", "OpenInference without messages",
        content=PlainValues("input.value", "output.value"),
    ),
    Convention(
        "gen_ai.response.image", "OpenLIT image generation",
        recognised_by=Recognition(_OPERATION, frozenset({
            "image", "image_generation", "create_image", "generate_image"}), _NOT_GENERATION),
        app_keys=("gen_ai.application_name",),
        image_keys=("gen_ai.response.image",),
        kept_keys=("gen_ai.environment",),
    ),
    Convention(
        "otel", "OpenTelemetry resource and general attributes",
        model_version_keys=("service.version",),
        resource_app_keys=("service.name",),
        user_keys=("user.id", "enduser.id"),
        session_keys=("session.id",),
        kept_keys=("deployment.environment", "deployment.environment.name"),
    ),
)  # fmt: skip


def union(keys: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Keys of several rows in table order, each once."""
    return tuple(dict.fromkeys(key for group in keys for key in group))


def recognitions(conventions: Sequence[Convention] = CONVENTIONS) -> tuple[Recognition, ...]:
    """The table's recognitions, merged by key: deciding ones first, in table order."""
    merged: dict[str, Recognition] = {}
    for c in conventions:
        r = c.recognised_by
        if r is not None:
            first = merged.setdefault(r.key, r)
            if first is not r:
                merged[r.key] = Recognition(first.key, first.values | r.values,
                                            first.not_a_generation, first.upper,
                                            first.null_decides)  # fmt: skip
    deciding = [r for r in merged.values() if r.not_a_generation]
    return (*deciding, *(r for r in merged.values() if not r.not_a_generation))
