"""The model interface the grammar's `llm.*` and `decide.model` primitives call.

`resources.sglang.SGLangResource` (an SGLang server over HTTP) and
`resources.offline_model.OfflineModel` (deterministic rules, no model at all) both implement
`ModelClient`. The grammar depends only on this protocol, never on a resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from grammar_ops.schemas import check_json_schema

Purpose = Literal["classify", "extract", "generate", "summarise", "decide", "plan"]


@dataclass(frozen=True)
class ModelCall:
    """One request to a model.

    At most one constraint (`json_schema`, `regex`, `ebnf`, `choices`) is set; SGLang enforces it
    during decoding. `subject`, `choice_descriptions`, `choice_schemas` (each choice's
    configuration schema, without what the template pinned) and `columns` (of the results the
    prompt shows) repeat, as data, what the prompt already says in words: the offline model,
    which understands no language, reads them instead of the prompt. A server never sees them
    except through the prompt.
    """

    purpose: Purpose
    prompt: str
    max_new_tokens: int
    json_schema: Mapping[str, Any] | None = None
    regex: str | None = None
    ebnf: str | None = None
    choices: tuple[str, ...] | None = None
    subject: str | None = None
    choice_descriptions: Mapping[str, str] | None = None
    choice_schemas: Mapping[str, Mapping[str, Any]] | None = None
    columns: tuple[str, ...] | None = None
    temperature: float = 0.0

    def __post_init__(self) -> None:
        constraints = [
            c for c in (self.json_schema, self.regex, self.ebnf, self.choices) if c is not None
        ]
        if len(constraints) > 1:
            raise ValueError("a ModelCall takes at most one of json_schema, regex, ebnf, choices")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.json_schema is not None:
            # Refused here, before any client sends it or builds a validator from it.
            check_json_schema(self.json_schema)

    @property
    def constrained(self) -> bool:
        return any(c is not None for c in (self.json_schema, self.regex, self.ebnf, self.choices))


@dataclass(frozen=True)
class ModelReply:
    """A model's answer with its accounting.

    `value` is the parsed, validated answer: the JSON value for a `json_schema` call, the chosen
    string for a `choices` call, the text otherwise.
    """

    text: str
    value: Any
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    retries: int = 0
    cost_usd: float = 0.0
    estimated: bool = False


class ModelError(Exception):
    """A model call failed for good (after the client's own retries), with the reason.

    A call the server answered, but whose answer is unusable (cut off at `max_new_tokens`, not
    JSON, off-schema), still spent tokens: the client sets `prompt_tokens`,
    `completion_tokens`, `cached_tokens` and `cost_usd` on the error (`estimated` when the
    server did not report them), so the caller counts them like a reply's.
    """

    def __init__(self, message: str, *, retryable: bool = False, last_response: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.last_response = last_response
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.cost_usd = 0.0
        self.estimated = False


@runtime_checkable
class ModelClient(Protocol):
    """What a model resource offers the grammar."""

    @property
    def model_name(self) -> str: ...

    def complete(self, call: ModelCall) -> ModelReply:
        """Answer one call, or raise `ModelError`."""
        ...

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        """Answer many calls with bounded concurrency; one result per call, in order.

        A failed call yields its `ModelError` in place instead of failing the batch, so the caller
        decides what a partial failure means.
        """
        ...


def complete_each(
    complete: Callable[[ModelCall], ModelReply], calls: Sequence[ModelCall]
) -> list[ModelReply | ModelError]:
    """`complete_many` for a client that answers one call at a time: each call in order, a
    failed one yielding its `ModelError` in place."""
    results: list[ModelReply | ModelError] = []
    for call in calls:
        try:
            results.append(complete(call))
        except ModelError as error:
            results.append(error)
    return results


@dataclass
class UsageMeter:
    """Token, request and cost counts, added up explicitly from replies (never by patching)."""

    requests: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    estimated_tokens: int = 0
    models: set[str] = field(default_factory=set)

    def record(self, reply: ModelReply) -> None:
        self.requests += 1
        self.retries += reply.retries
        self.latency_s += reply.latency_s
        self.models.add(reply.model)
        self._spend(reply)

    def record_failure(self, error: ModelError | None = None) -> None:
        """Count a failed call, and the tokens it spent when the server answered unusably."""
        self.requests += 1
        self.failures += 1
        if error is not None:
            self._spend(error)

    def _spend(self, source: ModelReply | ModelError) -> None:
        self.prompt_tokens += source.prompt_tokens
        self.completion_tokens += source.completion_tokens
        self.cached_tokens += source.cached_tokens
        self.cost_usd += source.cost_usd
        if source.estimated:
            self.estimated_tokens += source.prompt_tokens + source.completion_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_metadata(self) -> dict[str, float | int | str]:
        """Dagster-style usage metadata (`llm.prompt_tokens`, ...), as dagster-openai names it."""
        return {
            "llm.requests": self.requests,
            "llm.failures": self.failures,
            "llm.retries": self.retries,
            "llm.prompt_tokens": self.prompt_tokens,
            "llm.completion_tokens": self.completion_tokens,
            "llm.cached_tokens": self.cached_tokens,
            "llm.total_tokens": self.prompt_tokens + self.completion_tokens,
            "llm.estimated_tokens": self.estimated_tokens,
            "llm.latency_s": round(self.latency_s, 4),
            "llm.cost_usd": round(self.cost_usd, 6),
            "llm.models": ", ".join(sorted(self.models)),
        }
