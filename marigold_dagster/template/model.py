"""The template: pydantic models of the YAML format a workflow author writes.

Field-level rules live here (names, kinds, positive budgets, which keys each step kind takes);
rules that need the whole template (dependencies, cycles, branches, capabilities, data kinds)
live in `marigold_dagster.template.frame`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9_]+$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class StepKind(StrEnum):
    TASK = "task"
    DECISION = "decision"
    CONVERGE = "converge"
    BATCH = "batch"
    PLANNING = "planning"
    GATE = "gate"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class InputSpec(_Strict):
    """A value supplied at launch: a path to a table or a folder of documents, or a JSON file."""

    kind: Literal["table", "documents", "json"]
    description: str = ""
    default: str | None = Field(None, description="Path used when the launch gives none.")
    columns: dict[str, ColumnType] | None = Field(
        None,
        description="The table's columns (name: type). When given, the field names that steps "
        "read (expressions, `field:`, `by:`) are checked against them at load time.",
    )

    @model_validator(mode="after")
    def _columns_of_tables(self) -> InputSpec:
        if self.columns is not None and self.kind != "table":
            raise ValueError(f"`columns` describes a table input; this input is a {self.kind}")
        return self


ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp", "any"]


class Budget(_Strict):
    """Task-level ceilings the platform enforces."""

    max_steps: PositiveInt
    max_tokens: PositiveInt
    max_cost_usd: PositiveFloat
    max_fanout: PositiveInt = Field(description="Hard backstop for any single fan-out.")
    max_planning_phases: PositiveInt = 1


class RetrySpec(_Strict):
    """How a failing step is retried (a Dagster RetryPolicy)."""

    max_attempts: PositiveInt = 3
    backoff: Literal["exponential", "linear", "none"] = "exponential"
    delay_s: float = Field(1.0, ge=0)
    jitter: Literal["none", "full", "plus_minus"] = "none"


DEFAULT_BATCH_ROWS = 5_000
"""Rows per chunk when a batch step does not say. Each chunk is one Dagster step with a fixed
cost, paid while the model server waits: about 0.2 s here (seven event-log writes, the model
requests' ramp-up and tail). 5,000 short classifications keep a server of 1,600 prompts/s busy
for about 3 s, so that cost stays under 7% (slower servers: less), while a retry or an `isolate`
re-run repeats at most 5,000 rows. Measured: `bench/bench_scale.py --chunk-rows 2000 5000 10000`
(at 50,000 rows, template / direct 0.85, 0.92, 0.93)."""


class BatchSpec(_Strict):
    """Cursor-based fan-out over rows: chunks of `size` rows, one Dagster step per chunk."""

    size: PositiveInt = Field(
        DEFAULT_BATCH_ROWS, description="Rows per chunk: one Dagster step, retried as a unit."
    )
    failure_strategy: Literal["continue", "fail_fast", "isolate"] = "fail_fast"
    max_fanout: PositiveInt | None = Field(
        None, description="A tighter cap than budget.max_fanout for this step."
    )


class CapabilityPreset(_Strict):
    """An allowed capability with configuration the template pins: the planner's `with:` is
    merged over it, so the author decides what the planner need not (or must not) choose."""

    uses: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class PlanningOutput(_Strict):
    """What a planning step's result must contain, checked on every plan before it runs."""

    columns: list[str] = Field(
        min_length=1, description="Columns every terminal planned step's rows must have."
    )


class PlanningSpec(_Strict):
    """Bounds of a planning step: what the planner may use and how much it may create."""

    goal: str = Field(min_length=1)
    allow: list[str | CapabilityPreset] = Field(
        min_length=1, description="Capabilities the planner may use: names, or {uses, with}."
    )
    allow_dynamic_composition: bool = False
    max_steps: PositiveInt = 10
    max_depth: PositiveInt = 2
    max_phases: PositiveInt = 1
    max_attempts: PositiveInt = 3
    model: str = "planner"
    schema_tier: int = Field(
        3, ge=1, le=3, description="Capability schema tiers in the prompt (1: names only)."
    )
    sees: list[Name] | None = Field(
        None, description="Upstream steps whose results the planner sees (default: all)."
    )
    on_budget: Literal["stop", "fail"] = Field(
        "stop",
        description=(
            "When the next phase cannot fit the remaining budget: 'stop' ends the planning step "
            "with the results of the phases that ran; 'fail' fails it."
        ),
    )
    max_children: PositiveInt | None = Field(
        None, description="Most planned steps that may depend directly on any one step."
    )
    output: PlanningOutput | None = Field(
        None, description="The output contract: columns the planning step's result must have."
    )

    def presets(self) -> dict[str, dict[str, Any]]:
        """Allowed capability name -> pinned config (empty when none is pinned)."""
        return {
            entry if isinstance(entry, str) else entry.uses: (
                {} if isinstance(entry, str) else dict(entry.with_)
            )
            for entry in self.allow
        }


class GateSpec(_Strict):
    """A human approval point."""

    prompt: str = Field(min_length=1)
    approvers: list[str] = Field(default_factory=list)
    timeout_s: PositiveFloat | None = None


_KIND_SECTIONS: dict[StepKind, set[str]] = {
    StepKind.TASK: set(),
    StepKind.DECISION: {"branches"},
    StepKind.CONVERGE: set(),
    StepKind.BATCH: {"batch"},
    StepKind.PLANNING: {"planning"},
    StepKind.GATE: {"gate"},
}
_SECTIONS = {"branches", "batch", "planning", "gate"}
_TAKES_CAPABILITY = {StepKind.TASK, StepKind.DECISION, StepKind.BATCH, StepKind.CONVERGE}


class _StepBase(_Strict):
    """What every step has, whatever its kind."""

    name: Name
    description: str = ""
    depends_on: list[Name] = Field(default_factory=list)
    retry: RetrySpec | None = None
    timeout_s: PositiveFloat | None = None
    pool: str | None = Field(None, description="A Dagster concurrency pool.")
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _sections_match_kind(cls, data: Any) -> Any:
        """Say which kind a misplaced or missing section belongs to, before field checks."""
        if not isinstance(data, dict):
            return data
        kind = StepKind(data.get("kind") or StepKind.TASK)
        allowed = _KIND_SECTIONS[kind]
        for section in sorted(_SECTIONS - allowed):
            if data.get(section) is not None:
                owner = next(k.value for k, s in _KIND_SECTIONS.items() if section in s)
                raise ValueError(
                    f"`{section}` belongs to `kind: {owner}` steps, not `kind: {kind.value}`"
                )
        for section in sorted(allowed):
            if data.get(section) is None:
                raise ValueError(f"a `kind: {kind.value}` step needs a `{section}:` section")
        if kind is StepKind.DECISION and not data.get("branches"):
            raise ValueError("a decision needs at least one branch in `branches:`")
        uses, compose = data.get("uses"), data.get("compose")
        if kind in _TAKES_CAPABILITY:
            if uses is not None and compose is not None:
                raise ValueError("give either `uses:` or `compose:`, not both")
            if uses is None and compose is None and kind is not StepKind.CONVERGE:
                raise ValueError(
                    f"a `kind: {kind.value}` step needs `uses:` (a capability) "
                    "or `compose:` (an inline composition)"
                )
        elif uses is not None or compose is not None:
            raise ValueError(f"a `kind: {kind.value}` step takes no `uses:` or `compose:`")
        if (data.get("with") or data.get("with_")) and uses is None:
            raise ValueError("`with:` configures the capability named in `uses:`; there is none")
        return data


class CapabilityStep(_StepBase):
    """A step that runs a capability: a primitive, a pattern, a capability or an inline list."""

    uses: str | None = Field(None, description="A primitive, a pattern or a capability name.")
    compose: list[dict[str, Any]] | None = Field(
        None, description="An inline composition: [{use: primitive, with: {...}}, ...]."
    )
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class TaskStep(CapabilityStep):
    """The default kind: run a capability on the upstream results."""

    kind: Literal[StepKind.TASK] = StepKind.TASK


class DecisionStep(CapabilityStep):
    """Returns a subset of `branches`; steps on the branches not chosen are skipped."""

    kind: Literal[StepKind.DECISION]
    branches: list[Name] = Field(min_length=1)


class ConvergeStep(CapabilityStep):
    """Waits for whichever of its upstream steps ran, combines their results, then runs.

    `combine` says how differently shaped results become one input: `union` stacks their rows
    (tagged `source_step`, columns matched by name), `join` matches rows on the `keys` fields
    (a full outer join: every row of every upstream is kept), `by_source` hands the
    capability a mapping of upstream step name to its result.
    """

    kind: Literal[StepKind.CONVERGE]
    combine: Literal["union", "join", "by_source"] = Field(
        "union", description="How the upstream results combine: union, join or by_source."
    )
    keys: list[str] = Field(
        default_factory=list, description="The fields a `combine: join` matches rows on."
    )

    @model_validator(mode="after")
    def _join_has_keys(self) -> ConvergeStep:
        if self.combine == "join" and not self.keys:
            raise ValueError("`combine: join` needs `keys:`, the fields to match rows on")
        if self.combine != "join" and self.keys:
            raise ValueError("`keys:` names the fields to join on; it needs `combine: join`")
        return self


class BatchStep(CapabilityStep):
    """Cursor-based fan-out over rows: the capability runs once per chunk."""

    kind: Literal[StepKind.BATCH]
    batch: BatchSpec


class PlanningStep(_StepBase):
    """A segment the planner model fills in at run time, within `planning:` bounds."""

    kind: Literal[StepKind.PLANNING]
    planning: PlanningSpec


class GateStep(_StepBase):
    """A human approval point: the run pauses until someone decides."""

    kind: Literal[StepKind.GATE]
    gate: GateSpec


def _step_kind(data: Any) -> str | None:
    if isinstance(data, dict):
        kind = data.get("kind", StepKind.TASK.value)
        return kind.value if isinstance(kind, StepKind) else kind
    return getattr(data, "kind", None)


STEP_KIND_ERROR = "step_kind"

Step = Annotated[
    Annotated[TaskStep, Tag(StepKind.TASK.value)]
    | Annotated[DecisionStep, Tag(StepKind.DECISION.value)]
    | Annotated[ConvergeStep, Tag(StepKind.CONVERGE.value)]
    | Annotated[BatchStep, Tag(StepKind.BATCH.value)]
    | Annotated[PlanningStep, Tag(StepKind.PLANNING.value)]
    | Annotated[GateStep, Tag(StepKind.GATE.value)],
    Discriminator(
        _step_kind,
        custom_error_type=STEP_KIND_ERROR,
        custom_error_message="Input should be "
        + ", ".join(f"'{kind.value}'" for kind in list(StepKind)[:-1])
        + f" or '{list(StepKind)[-1].value}'",
    ),
]
"""One step of the frame: its `kind` picks the type, and each type holds its own section."""
STEP_TYPES: tuple[type[_StepBase], ...] = (
    TaskStep,
    DecisionStep,
    ConvergeStep,
    BatchStep,
    PlanningStep,
    GateStep,
)


class WatchTrigger(_Strict):
    """One run per new file in a folder, the file's path given as one of the template's inputs."""

    input: Name = Field(description="The input each new file is given as.")
    folder: str = Field(min_length=1, description="Watched folder, relative to the template.")
    pattern: str = Field("*", min_length=1, description="File names to watch (fnmatch).")
    inputs: dict[Name, str] = Field(
        default_factory=dict, description="Paths of the other inputs (relative to the template)."
    )
    settle_s: float = Field(
        5.0, ge=0, description="A file counts once it has not changed for this long."
    )
    interval_s: PositiveInt = Field(30, description="Seconds between looks at the folder.")
    enabled: bool = Field(
        True, description="Running when Dagster starts (false: off until a UI user switches it on)."
    )

    @field_validator("pattern")
    @classmethod
    def _names_only(cls, pattern: str) -> str:
        if "/" in pattern or "\\" in pattern:
            raise ValueError(
                f"`pattern` matches file names inside `folder`, so it has no path separator; "
                f"got '{pattern}' (put the sub-folder in `folder:`)"
            )
        return pattern


class ScheduleTrigger(_Strict):
    """Runs on a cron schedule (a nightly batch), with fixed input paths."""

    cron: str = Field(description="A five-field cron expression, e.g. '0 2 * * *'.")
    timezone: str = Field("UTC", description="An IANA time zone, e.g. UTC or Europe/Berlin.")
    inputs: dict[Name, str] = Field(
        default_factory=dict, description="Input paths (relative to the template)."
    )
    enabled: bool = Field(True, description="Running when Dagster starts.")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(
                f"`cron` takes five fields (minute hour day-of-month month day-of-week), "
                f"e.g. '0 2 * * *'; got '{cron}'"
            )
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{zone}'; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return zone


AFTER_INPUTS_HELP = (
    "`same` (the parent run's inputs of the same name), `none`, "
    "or a mapping {this template's input: the parent's input}"
)


class AfterTrigger(_Strict):
    """A follow-up: one run of this template whenever a run of `template` ends with `status`."""

    template: Name = Field(description="The parent template whose runs are watched.")
    status: Literal["success", "failure"] = "success"
    inputs: Literal["same", "none"] | dict[Name, Name] = Field(
        "same", description=f"Inputs taken from the parent run: {AFTER_INPUTS_HELP}."
    )
    enabled: bool = Field(True, description="Running when Dagster starts.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_shape(cls, value: Any) -> Any:
        if isinstance(value, str) and value in ("same", "none"):
            return value
        if isinstance(value, dict) and all(
            isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_]+", name)
            for pair in value.items()
            for name in pair
        ):
            return value
        raise ValueError(f"`inputs` is {AFTER_INPUTS_HELP} of input names; got {value!r}")


class Triggers(_Strict):
    """What launches runs of the template besides a person: new files, a clock, another run."""

    watch: WatchTrigger | None = None
    schedule: ScheduleTrigger | None = None
    after: AfterTrigger | None = None


class Template(_Strict):
    """A workflow template; compiles into one Dagster job named `name`."""

    name: Name
    version: PositiveInt
    description: str = ""
    inputs: dict[Name, InputSpec] = Field(default_factory=dict)
    models: dict[Name, Name] = Field(
        default_factory=dict, description="Model role -> Dagster resource key."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts network primitives may reach."
    )
    budget: Budget
    materialize: Literal["results", "every_step"] = Field(
        "results",
        description="Which steps record an asset materialization each run, and so are declared "
        "assets: `results` (steps nothing else consumes, plans, planned steps, planning, batch "
        "and gate steps) or `every_step` (one more event per step on the instance).",
    )
    tags: dict[str, str] = Field(default_factory=dict)
    executor: Literal["in_process", "multiprocess", "celery"] | None = Field(
        None,
        description="How the job's steps run: `in_process` (one process per run; model-bound "
        "steps get their concurrency from the model resource), `multiprocess` (one process per "
        "step) or `celery` (steps on Celery workers). Default: the deployment's "
        "MARIGOLD_EXECUTOR, else `in_process`.",
    )
    triggers: Triggers = Field(default_factory=Triggers)
    steps: list[Step] = Field(min_length=1)

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)
