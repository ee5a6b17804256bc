"""The typed results of the MCP tools: pydantic models published as the tools' output schemas.

Every tool answers with an `Outcome`: `ok`, then either `result` or `error`. An error carries a
stable `code`, a message, and what would be valid (names, values, or the findings of a
validator), so an agent can retry, revise or escalate without parsing prose.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


def _untitled(schema: dict[str, Any]) -> None:
    """Drop the titles pydantic derives from names: they repeat the names an agent reads."""
    schema.pop("title", None)
    for item in schema.get("properties", {}).values():
        item.pop("title", None)


class Result(BaseModel):
    """The base of every tool result: its JSON Schema carries no derived titles."""

    model_config = ConfigDict(json_schema_extra=_untitled)


class Problem(Result):
    """One finding of a validator: a stable code, where (field path, line) and what is wrong."""

    code: str
    field: str = Field(default="", description="Dotted path of the field (template) or location.")
    line: int | None = None
    message: str
    file: str | None = None


class ToolFailure(Result):
    """Why a tool could not do what was asked, and what would be valid instead."""

    code: str = Field(description="Stable; explain_codes describes it.")
    message: str
    valid: list[str] = Field(default_factory=list, description="Valid names or values.")
    problems: list[Problem] = Field(default_factory=list)


class Outcome(Result, Generic[T]):
    """`ok` with a `result`, or not `ok` with an `error`."""

    ok: bool
    result: T | None = None
    error: ToolFailure | None = None


class Page(Result):
    """Where a paged list stands: pass `next_offset` as `offset` for the next page."""

    offset: int
    limit: int
    total: int | None = None
    next_offset: int | None = None


# -- offline tier


class InputInfo(Result):
    name: str
    kind: str
    description: str = ""
    default: str | None = None
    columns: list[str] | None = Field(default=None, description="Columns of the default file.")


class TemplateInfo(Result):
    name: str
    version: int
    description: str = ""
    steps: int
    kinds: list[str]
    inputs: list[str]
    resource: str = Field(description="URI of the template's YAML resource.")


class TemplateList(Result):
    templates: list[TemplateInfo]
    problems: list[Problem] = Field(
        default_factory=list, description="Templates in the folder that failed to load."
    )


class StepInfo(Result):
    name: str
    kind: str
    description: str = ""
    uses: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    input_kind: str
    output_kind: str
    branches: list[str] = Field(default_factory=list)
    batch: dict[str, Any] | None = None
    planning: dict[str, Any] | None = Field(
        default=None, description="Goal, allowed capabilities, bounds."
    )
    gate: dict[str, Any] | None = None


class TemplateDescription(Result):
    name: str
    version: int
    description: str
    inputs: list[InputInfo]
    budget: dict[str, Any]
    models: dict[str, str]
    steps: list[StepInfo]
    mermaid: str = Field(description="The frame as a Mermaid flowchart.")


class ValidationReport(Result):
    valid: bool
    template: str | None = None
    steps: int | None = None
    problems: list[Problem] = Field(default_factory=list)


class CapabilityMatch(Result):
    name: str
    summary: str
    kind: Literal["primitive", "pattern"]


class CapabilitySearch(Result):
    matches: list[CapabilityMatch]
    page: Page


class CapabilitySchema(Result):
    tier: int
    names: list[str]
    text: str
    json_schema: dict[str, Any]
    tokens: int
    tokenizer: str


class CompositionReport(Result):
    valid: bool
    source: str | None = None
    input_kind: str | None = None
    output_kind: str | None = None
    side_effect: bool | None = None
    handler_type: str | None = None
    model_roles: list[str] = Field(default_factory=list)
    spec: list[dict[str, Any]] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)


class CodeExplanation(Result):
    code: str
    raised_by: str
    meaning: str
    fix: str


class CodeList(Result):
    codes: list[CodeExplanation]
    unknown: list[str] = Field(default_factory=list)


# -- read tier


class BudgetUseInfo(Result):
    steps: int
    phases: int
    tokens: int
    cost_usd: float
    text: str = Field(description="Use against the template's ceilings, in words.")


class RunInfo(Result):
    run_id: str
    template: str
    version: str
    status: str
    correlation_id: str
    parent_correlation_id: str | None = None
    started_at: float | None = None
    steps: dict[str, int] = Field(description="Template steps per status.")
    budget: BudgetUseInfo


class RunList(Result):
    runs: list[RunInfo]
    page: Page


class StepState(Result):
    name: str
    kind: str
    status: str
    attempts: int = 0
    duration_s: float | None = None
    rows: int | None = None
    detail: str = Field(default="", description="Why it ended so: a cause, a choice, a gate.")


class RunSummaryResult(Result):
    run: RunInfo
    steps: list[StepState]
    waiting_gates: list[str] = Field(default_factory=list)


class StepResult(Result):
    run_id: str
    step: str
    status: str
    rows: int | None = None
    preview: Any = None
    file: str | None = Field(default=None, description="Parquet file of the step's table, if any.")
    columns: list[str] | None = None
    records: list[dict[str, Any]] | None = Field(
        default=None, description="One page of the file's rows."
    )
    page: Page | None = None


class PlanAttempt(Result):
    attempt: int
    accepted: bool
    findings: list[str]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answer: Any = None


class PlannedStepProvenance(Result):
    id: str
    metadata: dict[str, Any]


class PlanResult(Result):
    run_id: str
    step: str
    phase: int
    status: str
    fragment_id: str | None = None
    fragment: Any = None
    estimate: str | None = None
    budget: str | None = None
    attempts: list[PlanAttempt]
    provenance: list[PlannedStepProvenance] = Field(default_factory=list)


class TaskInfo(Result):
    correlation_id: str
    parent_correlation_id: str | None = None
    depth: int
    runs: list[RunInfo]


class LineageResult(Result):
    asked: str
    root: str
    outside_parent: str | None = None
    tasks: list[TaskInfo] = Field(description="Depth first from the root.")
    total: BudgetUseInfo


class DeadLetters(Result):
    run_id: str
    step: str
    file: str | None
    total: int
    records: list[dict[str, Any]]
    page: Page


class WaitingGate(Result):
    run_id: str
    template: str
    step: str
    prompt: str
    approvers: list[str]
    paused_at: float
    deadline: float | None = None
    may_decide: bool = Field(description="Whether this server's identity may decide it.")


class WaitingGates(Result):
    gates: list[WaitingGate]
    identity: str | None = None


# -- write tier


class Preview(Result):
    """What a write tool would do. Call it again with the same arguments and `confirm_token`."""

    action: str
    effects: list[str]
    confirm_token: str
    expires_at: float


class LaunchResult(Result):
    correlation_id: str
    running: bool = Field(
        default=False,
        description="Started in the background: follow it with list_runs(correlation_id).",
    )
    run: RunInfo | None = None
    steps: list[StepState] = Field(default_factory=list)
    files: str | None = None


class DryRunResult(Result):
    template: str
    step: str
    accepted: bool
    attempts: list[PlanAttempt]
    fragment: Any = None
    estimate: str | None = None
    budget: str


class GateDecisionResult(Result):
    run_id: str
    step: str
    decision: str
    by: str
    reason: str
    resumed_run_id: str | None = None
    resumed_status: str | None = None


class ResumeResult(Result):
    parent_run_id: str
    run_id: str
    status: str


class WriteResult(Result, Generic[T]):
    """Either the `preview` (nothing done yet) or what was `done`."""

    preview: Preview | None = None
    done: T | None = None
