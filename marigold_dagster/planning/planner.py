"""The planning call: ask the planner model for a fragment, validate it, re-ask with diagnostics.

Before the first attempt, results of 10-100 KB are summarised by the model (one digest call
each, see `prompt.digest_call`); the digests join the prompt of every attempt. Every
attempt is recorded, rejected ones with their findings; after `max_attempts` rejections the
step fails with the whole history. Nothing a planner answers runs before it is accepted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from grammar_ops import Catalog, Finding, ModelCall, ModelClient, ModelError, UsageMeter
from marigold_dagster.artifacts import StepValue
from marigold_dagster.errors import PlanRejected
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.prompt import (
    PlannerPrompt,
    digest_call,
    prompt_prefix,
    prompt_variable,
    results_section,
)
from marigold_dagster.planning.validation import PlanningScope, ValidatedFragment, validate_fragment

PLANNER_MAX_NEW_TOKENS = 2048


@dataclass(frozen=True)
class PlanAttempt:
    """One planner call and what validation said of it."""

    number: int
    prompt_sha256: str
    prompt_chars: int
    answer: Any
    findings: tuple[Finding, ...]
    accepted: bool
    latency_s: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "accepted": self.accepted,
            "prompt_sha256": self.prompt_sha256,
            "prompt_chars": self.prompt_chars,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "tokens_estimated": self.estimated,
            "latency_s": round(self.latency_s, 4),
            "findings": [str(finding) for finding in self.findings],
            "answer": self.answer,
        }


@dataclass
class PlanOutcome:
    attempts: list[PlanAttempt] = field(default_factory=list)
    fragment: ValidatedFragment | None = None
    prompt: PlannerPrompt | None = None
    usage: UsageMeter = field(default_factory=UsageMeter)
    digests: dict[str, str] = field(default_factory=dict)
    digest_failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanRequest:
    """Everything a planning call needs besides the model."""

    step: str
    goal: str
    scope: PlanningScope
    results: Mapping[str, StepValue]
    budget: BudgetStatus | None
    max_attempts: int
    tier: int = 3
    phase: int = 1

    def prefix(self) -> str:
        return prompt_prefix(
            self.scope.catalog,
            self.goal,
            self.scope.presets,
            tier=self.tier,
            max_steps=self.scope.max_steps,
            max_depth=self.scope.max_depth,
            composable=sorted(self.scope.composable),
        )


def plan_fragment(model: ModelClient, request: PlanRequest) -> PlanOutcome:
    """Ask, validate, and re-ask with the findings, up to `request.max_attempts` times.

    A call that fails in a way retrying may fix (server unreachable, 429/5xx, timed out) is not
    an attempt: its `ModelError` propagates, and the planning step's `retry:` tries again.

    Raises:
        PlanRejected: no attempt was accepted; carries every attempt.
        ModelError: a planner call failed transiently (`retryable`).
    """
    outcome = PlanOutcome()
    prefix = request.prefix()
    schema = request.scope.json_schema()
    failures: list[Sequence[Finding]] = []
    descriptions = _descriptions(request.scope.catalog, request.scope.presets)
    _digest_results(model, request.results, outcome)
    results = results_section(request.results, outcome.digests)
    for number in range(1, request.max_attempts + 1):
        prompt = PlannerPrompt(
            prefix,
            prompt_variable(results, request.budget, failures, request.phase),
            request.tier,
        )
        outcome.prompt = prompt
        call = ModelCall(
            purpose="plan",
            prompt=prompt.text,
            max_new_tokens=PLANNER_MAX_NEW_TOKENS,
            json_schema=schema,
            subject=request.goal,
            choice_descriptions=descriptions,
            choice_schemas=_config_schemas(request.scope.catalog, request.scope.presets),
            columns=_columns(request.scope.samples),
        )
        started = time.perf_counter()
        try:
            reply = model.complete(call)
        except ModelError as error:
            outcome.usage.record_failure(error)  # an unusable answer still spent its tokens
            if error.retryable:  # the call failed, not the plan: the step's `retry:` applies
                error.outcome = outcome  # type: ignore[attr-defined]  # what was spent so far
                raise
            answer = _parsed(error.last_response)
            if answer is None:  # no answer to diagnose: down, timed out, truncated, not JSON
                findings: Sequence[Finding] = [
                    Finding("MODEL_ERROR", (), f"the planner call failed: {error}")
                ]
            else:  # JSON that broke the schema: say exactly how, as validation would
                findings = validate_fragment(answer, request.scope).findings
            outcome.attempts.append(
                _attempt(number, prompt, answer, tuple(findings), started, reply=error)
            )
            failures.append(findings)
            continue
        outcome.usage.record(reply)
        verdict = validate_fragment(reply.value, _with_planner_usage(request.scope, outcome.usage))
        outcome.attempts.append(
            _attempt(
                number,
                prompt,
                reply.value,
                tuple(verdict.findings),
                started,
                accepted=verdict.accepted,
                reply=reply,
            )
        )
        if verdict.accepted:
            outcome.fragment = verdict.fragment
            return outcome
        failures.append(verdict.findings)
    raise PlanRejected(request.step, outcome)


def _digest_results(
    model: ModelClient, results: Mapping[str, StepValue], outcome: PlanOutcome
) -> None:
    """Ask the model for a digest of each result that wants one; a failed call costs only that.

    A result whose digest call fails is still shown by its structured summary; the failure is
    kept on the outcome (and in the plan's metadata), never in the prompt.
    """
    calls = {name: call for name, value in results.items() if (call := digest_call(name, value))}
    if not calls:
        return
    for name, result in zip(calls, model.complete_many(list(calls.values())), strict=True):
        if isinstance(result, ModelError):
            outcome.usage.record_failure(result)
            outcome.digest_failures[name] = str(result)
        else:
            outcome.usage.record(result)
            cut = " [...]" if result.finish_reason == "length" else ""
            outcome.digests[name] = result.text + cut


def _attempt(
    number: int,
    prompt: PlannerPrompt,
    answer: Any,
    findings: tuple[Finding, ...],
    started: float,
    *,
    accepted: bool = False,
    reply: Any = None,
) -> PlanAttempt:
    return PlanAttempt(
        number=number,
        prompt_sha256=hashlib.sha256(prompt.text.encode("utf-8")).hexdigest(),
        prompt_chars=len(prompt.text),
        answer=answer,
        findings=findings,
        accepted=accepted,
        latency_s=time.perf_counter() - started,
        prompt_tokens=getattr(reply, "prompt_tokens", 0),
        cached_tokens=getattr(reply, "cached_tokens", 0),
        completion_tokens=getattr(reply, "completion_tokens", 0),
        cost_usd=getattr(reply, "cost_usd", 0.0),
        estimated=getattr(reply, "estimated", False),
    )


def _parsed(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past what Python can read
        return None


def _with_planner_usage(scope: PlanningScope, usage: UsageMeter) -> PlanningScope:
    """The scope with this planning call's own tokens and cost counted as used."""
    if scope.budget is None:
        return scope
    spent = BudgetUse(tokens=usage.prompt_tokens + usage.completion_tokens, cost_usd=usage.cost_usd)
    return replace(scope, budget=BudgetStatus(scope.budget.budget, scope.budget.used.plus(spent)))


def _config_schemas(catalog: Catalog, presets: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each allowed capability's configuration schema, less the keys the template pinned."""
    schemas = {}
    for name, pinned in presets.items():
        entry = catalog.primitives.get(name) or catalog.patterns.get(name)
        config = getattr(entry, "Config", None)
        if config is None:
            continue
        schema = dict(config.model_json_schema(by_alias=True))
        schema["properties"] = {
            k: v for k, v in schema.get("properties", {}).items() if k not in pinned
        }
        schema["required"] = [k for k in schema.get("required", []) if k not in pinned]
        schemas[name] = schema
    return schemas


def _columns(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[str, ...]:
    """The columns of the results the planner sees, in order of first appearance."""
    columns: dict[str, None] = {}
    for rows in samples.values():
        if rows:
            columns.update(dict.fromkeys(str(key) for key in rows[0]))
    return tuple(columns)


def _descriptions(catalog: Catalog, presets: Mapping[str, Any]) -> dict[str, str]:
    described = {}
    for name in presets:
        entry = catalog.primitives.get(name) or catalog.patterns.get(name)
        described[name] = entry.summary if entry is not None else name
    return described
