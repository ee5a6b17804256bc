"""The frame: a template checked as a whole and analysed for compilation.

`analyse_frame` checks what no single field can (dependencies exist, no cycles, branches are
declared, capabilities resolve, each step accepts the kind of data its upstream produces) and
works out, for every step, its composition, its input and output kinds, and its *guard*: the
(decision, branch) choices it needs in order to run. A gate counts as a decision with one branch,
`approved`, taken when a person approves it. Guards decide which always-present value a
convergence step is given so that it runs exactly when the region it closes ran.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from grammar_ops import Catalog, Composition, CompositionError, Finding, Kind
from grammar_ops.findings import FindingPath
from marigold_dagster.graphs import ancestors, dependency_order, find_cycle
from marigold_dagster.template.model import (
    BatchSpec,
    BatchStep,
    CapabilityStep,
    DecisionStep,
    GateSpec,
    GateStep,
    PlanningSpec,
    PlanningStep,
    Step,
    StepKind,
    Template,
)
from marigold_dagster.template.yaml_source import YamlSource

Guard = frozenset[tuple[str, str]]
AddProblem = Callable[[str, FindingPath, str], None]
ROW_KINDS = frozenset({Kind.TABLE, Kind.RECORDS})
GATE_APPROVED = "approved"  # the gate output that carries its input on when approved
GATE_PRIMITIVE = "gate.approval"


@dataclass(frozen=True)
class Sentinel:
    """The value a converge step always receives when it should run.

    `output` is `decided` (the decision ran) or a branch name (the decision chose that branch);
    for a gate, `decided` (it was decided) or `approved`.
    """

    decision: str
    output: str


@dataclass(frozen=True)
class FrameStep:
    """One template step with everything the compiler needs to know about it."""

    step: Step
    index: int
    composition: Composition | None
    input_kind: Kind
    output_kind: Kind
    guard: Guard
    sentinel: Sentinel | None = None
    input_columns: frozenset[str] | None = None  # None: not known before a run
    output_columns: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def capability(self) -> Composition:
        """The composition a capability-running step runs (a converge that only joins has none)."""
        if self.composition is None:
            raise TypeError(f"step '{self.name}' runs no capability")
        return self.composition

    @property
    def branches(self) -> list[str]:
        """A decision's branches; no other kind has any."""
        return list(self.step.branches) if isinstance(self.step, DecisionStep) else []

    @property
    def batch(self) -> BatchSpec:
        """A batch step's `batch:` section."""
        return _of_kind(self.step, BatchStep).batch

    @property
    def planning(self) -> PlanningSpec:
        """A planning step's `planning:` section."""
        return _of_kind(self.step, PlanningStep).planning

    @property
    def gate(self) -> GateSpec:
        """A gate step's `gate:` section."""
        return _of_kind(self.step, GateStep).gate

    @property
    def kind(self) -> StepKind:
        return self.step.kind


@dataclass(frozen=True)
class Frame:
    """A validated template, its steps in topological order, the catalog it resolved in, and
    the YAML it was read from (so later checks name lines without reading the file again)."""

    template: Template
    path: Path
    catalog: Catalog
    source: YamlSource = field(repr=False, compare=False)
    steps: dict[str, FrameStep] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.template.name

    def located(self, finding: Finding) -> Finding:
        """`finding` (a path in this template) with the line its path has in the file."""
        return replace(finding, line=self.source.line_of(finding.path))

    def resolve(self, path: str) -> Path:
        """`path` as the template means it: relative to the template file unless absolute."""
        return (self.path.parent / path).resolve()

    def ancestors(self, name: str) -> set[str]:
        """Every step `name` depends on, directly or through others."""
        return ancestors({step.name: step.step.depends_on for step in self}, name)

    def __iter__(self) -> Iterator[FrameStep]:
        return iter(self.steps.values())

    def consumers(self, name: str) -> list[str]:
        """The steps that depend on step `name`."""
        return [step.name for step in self if name in step.step.depends_on]

    def materializes(self, name: str) -> bool:
        """Whether each run records an asset materialization of step `name`: every step under
        `materialize: every_step`; otherwise results (steps nothing consumes), planning steps,
        gates (what was decided) and batch steps (whose merge also reports the
        `every_row_processed` check)."""
        step = self.steps[name]
        return (
            self.template.materialize == "every_step"
            or not self.consumers(name)
            or step.kind in (StepKind.PLANNING, StepKind.BATCH, StepKind.GATE)
        )

    def edge_guard(self, upstream: str, downstream: str) -> Guard:
        """What must hold for `upstream`'s value to reach `downstream`."""
        source = self.steps[upstream]
        guard = source.guard
        branches = source.branches
        if source.kind is StepKind.DECISION and downstream in branches:
            guard = guard | {(upstream, downstream)}
        if source.kind is StepKind.GATE:
            guard = guard | {(upstream, GATE_APPROVED)}
        return guard


StepOfKind = TypeVar("StepOfKind", bound=BaseModel)


def _of_kind(step: Step, kind: type[StepOfKind]) -> StepOfKind:
    if not isinstance(step, kind):
        raise TypeError(
            f"step '{step.name}' is a `kind: {step.kind.value}` step, not {kind.__name__}"
        )
    return step


def analyse_frame(
    template: Template, source: YamlSource, path: Path, catalog: Catalog
) -> tuple[Frame | None, list[Finding]]:
    """Check `template` (read from `source`) as a whole; return the frame, or None and every
    problem found, each with its line."""
    problems: list[Finding] = []

    def add(code: str, where: FindingPath, message: str) -> None:
        problems.append(Finding(code, where, message, source.line_of(where)))

    if template.name != path.stem:
        add(
            "NAME_NOT_FILE_STEM",
            ("name",),
            f"template name '{template.name}' must equal the file name '{path.stem}' "
            f"(rename the file to {template.name}{path.suffix} or set name: {path.stem})",
        )
    index_of: dict[str, int] = {}
    for index, step in enumerate(template.steps):
        if step.name in index_of:
            add(
                "DUPLICATE_STEP",
                ("steps", index, "name"),
                f"step name '{step.name}' is already used by steps[{index_of[step.name]}]; "
                "step names must be unique",
            )
        else:
            index_of[step.name] = index
    if len(template.steps) > template.budget.max_steps:
        add(
            "OVER_BUDGET",
            ("budget", "max_steps"),
            f"the template has {len(template.steps)} steps but budget.max_steps is "
            f"{template.budget.max_steps}",
        )
    _check_edges(template, index_of, add)
    if problems:
        return None, problems
    order = _topological_order(template, index_of, add)
    if order is None:
        return None, problems

    frame = Frame(template=template, path=path, catalog=catalog, source=source)
    for name in order:
        index = index_of[name]
        if any(dep not in frame.steps for dep in template.steps[index].depends_on):
            continue  # an upstream step has problems of its own; they are reported already
        analysed = _analyse_step(frame, template.steps[index], index, add)
        if analysed is not None:
            frame.steps[name] = analysed
    if problems:
        return None, problems
    for analysed in list(frame):
        if analysed.kind is StepKind.CONVERGE:
            frame.steps[analysed.name] = _with_sentinel(frame, analysed, add)
    if problems:
        return None, problems
    return frame, []


def _check_edges(template: Template, index_of: dict[str, int], add: AddProblem) -> None:
    steps = {step.name: step for step in template.steps}
    known = ", ".join(steps)
    for index, step in enumerate(template.steps):
        seen: set[str] = set()
        for position, upstream in enumerate(step.depends_on):
            where = ("steps", index, "depends_on", position)
            if upstream == step.name:
                add("SELF_DEPENDENCY", where, f"step '{step.name}' cannot depend on itself")
            elif upstream not in steps:
                add(
                    "UNKNOWN_DEPENDENCY",
                    where,
                    f"step '{step.name}' depends on '{upstream}', which is not a step; "
                    f"steps are: {known}",
                )
            elif upstream in seen:
                add("DUPLICATE_DEPENDENCY", where, f"'{upstream}' is listed twice")
            else:
                source = steps[upstream]
                if source.kind is StepKind.DECISION and step.name not in (source.branches or []):
                    add(
                        "BRANCH_NOT_DECLARED",
                        where,
                        f"step '{step.name}' depends on decision '{upstream}' but is not one of "
                        f"its branches {source.branches}; add it to `branches:` of '{upstream}' "
                        "or depend on a step after the decision",
                    )
            seen.add(upstream)
        if step.kind is StepKind.CONVERGE and not step.depends_on:
            add(
                "CONVERGE_WITHOUT_UPSTREAM",
                ("steps", index, "depends_on"),
                "a converge step joins upstream steps: list them in depends_on",
            )
        branches = step.branches if isinstance(step, DecisionStep) else []
        for position, branch in enumerate(branches):
            where = ("steps", index, "branches", position)
            if branch not in steps:
                add(
                    "UNKNOWN_BRANCH",
                    where,
                    f"branch '{branch}' of decision '{step.name}' is not a step; "
                    f"steps are: {known}",
                )
            elif step.name not in steps[branch].depends_on:
                add(
                    "BRANCH_NOT_DOWNSTREAM",
                    where,
                    f"branch '{branch}' must list '{step.name}' in its depends_on, "
                    "since it runs only when the decision chooses it",
                )
            if branches.index(branch) != position:
                add("DUPLICATE_BRANCH", where, f"branch '{branch}' is listed twice")


def _topological_order(
    template: Template, index_of: dict[str, int], add: AddProblem
) -> list[str] | None:
    """Steps in dependency order (stable: template order among ready steps), or None on a cycle."""
    graph = {step.name: step.depends_on for step in template.steps}
    cycle = find_cycle(graph)
    if cycle:
        add(
            "CYCLE",
            ("steps", index_of[cycle[0]], "depends_on"),
            f"steps form a cycle: {' -> '.join(cycle)}; a workflow must be acyclic",
        )
        return None
    return dependency_order(graph)


def _analyse_step(frame: Frame, step: Step, index: int, add: AddProblem) -> FrameStep | None:
    template = frame.template
    upstream = [frame.steps[name] for name in step.depends_on]
    guard: Guard = frozenset()
    for dep in step.depends_on:
        guard |= frame.edge_guard(dep, step.name)

    if step.kind is StepKind.CONVERGE:
        kinds = {_edge_kind(frame, dep) for dep in step.depends_on}
        rows = kinds <= ROW_KINDS and step.combine != "by_source"
        input_kind = Kind.TABLE if rows else Kind.JSON
        if step.combine == "join" and not kinds <= ROW_KINDS:
            add(
                "JOIN_NEEDS_ROWS",
                ("steps", index, "combine"),
                "`combine: join` matches rows, but some upstream hands on "
                f"{', '.join(sorted(k.title for k in kinds - ROW_KINDS))}; use "
                "`combine: by_source`",
            )
        # A converge runs when any upstream ran: its guard is what all its upstreams share.
        edge_guards = [frame.edge_guard(dep, step.name) for dep in step.depends_on]
        guard = frozenset.intersection(*edge_guards) if edge_guards else frozenset()
    else:
        input_kind = _edge_kind(frame, step.depends_on[0]) if upstream else Kind.NOTHING
    input_columns = (
        _edge_columns(frame, step.depends_on[0])
        if upstream and step.kind is not StepKind.CONVERGE
        else None
    )

    composition = None
    capability = step if isinstance(step, CapabilityStep) else None
    if capability is not None and (capability.uses is not None or capability.compose is not None):
        composition = _resolve(frame.catalog, capability, index, input_kind, add)
        if composition is None:
            return None
        _check_references(template, capability, index, composition, add)

    output_kind = composition.output_kind(input_kind) if composition else input_kind
    where = ("steps", index, "uses" if capability is not None and capability.uses else "compose")
    if step.kind is StepKind.DECISION and output_kind is not Kind.DECISION:
        add(
            "NOT_A_DECISION",
            where,
            f"a decision's capability must produce a Decision (e.g. decide.rules, decide.model); "
            f"this one produces {output_kind.title}",
        )
    if isinstance(step, DecisionStep) and composition is not None:
        _check_branch_refs(step, index, composition, add)
    if step.kind is StepKind.BATCH:
        if input_kind not in ROW_KINDS:
            add(
                "BATCH_NEEDS_ROWS",
                ("steps", index, "depends_on"),
                f"a batch fans out over rows, but its input is {input_kind.title}; "
                "depend first on a step that produces a Table or Records",
            )
        chunk_output = composition.output_kind(Kind.TABLE) if composition else Kind.TABLE
        if chunk_output not in ROW_KINDS:
            add(
                "BATCH_OUTPUT_NOT_ROWS",
                where,
                f"a batch's capability must produce rows (Table or Records) to merge; "
                f"this one produces {chunk_output.title}",
            )
        output_kind = Kind.TABLE
        cap = step.batch.max_fanout if step.batch else None
        if cap is not None and cap > template.budget.max_fanout:
            add(
                "OVER_BUDGET",
                ("steps", index, "batch", "max_fanout"),
                f"batch.max_fanout {cap} exceeds budget.max_fanout {template.budget.max_fanout}",
            )
    primitives = [s.primitive.name for s in composition.steps] if composition else []
    if GATE_PRIMITIVE in primitives:
        add(
            "GATE_INLINE",
            where,
            f"`{GATE_PRIMITIVE}` cannot run inside a step's capability: declare a `kind: gate` "
            "step with a `gate: {prompt, approvers, timeout_s}` section instead",
        )
    if step.kind is StepKind.GATE:
        _check_gate(step, index, add)
    if step.kind is StepKind.PLANNING:
        _check_planning(frame, step, index, add)
        output_kind = Kind.TABLE
    output_columns = input_columns if step.kind is StepKind.GATE else None
    if composition is not None and step.kind is not StepKind.PLANNING:
        output_columns = _check_fields(frame, step, index, composition, input_columns, add)
    return FrameStep(
        step=step,
        index=index,
        composition=composition,
        input_kind=input_kind,
        output_kind=output_kind,
        guard=guard,
        input_columns=input_columns,
        output_columns=output_columns,
    )


def _check_fields(
    frame: Frame,
    step: Step,
    index: int,
    composition: Composition,
    columns: frozenset[str] | None,
    add: AddProblem,
) -> frozenset[str] | None:
    """Check the fields each primitive reads against the columns known to reach it; return the
    columns the step produces (None once any primitive's output is not known before a run)."""
    declared = {
        name: frozenset(spec.columns)
        for name, spec in frame.template.inputs.items()
        if spec.columns is not None
    }
    uses = isinstance(step, CapabilityStep) and step.uses is not None
    # a primitive named in `uses:` has its config paths in `with:`; a pattern's differ from it
    single = uses and [s.primitive.name for s in composition.steps] == [getattr(step, "uses", "")]
    for position, composed in enumerate(composition.steps):
        if columns is not None:
            for path, name in composed.primitive.fields_read(composed.config):
                if name in columns:
                    continue
                if single:
                    where: FindingPath = ("steps", index, "with", *path)
                elif uses:
                    where = ("steps", index, "with")
                else:
                    where = ("steps", index, "compose", position, "with", *path)
                known = sorted(columns)
                add(
                    "UNKNOWN_COLUMN",
                    where,
                    f"`{composed.primitive.name}` reads field `{name}`, which the rows reaching it "
                    f"do not have.{_near(name, known)} Their columns: {', '.join(known) or 'none'}",
                )
        columns = composed.primitive.output_columns(composed.config, columns, declared)
    return columns


def _check_branch_refs(
    step: DecisionStep, index: int, composition: Composition, add: AddProblem
) -> None:
    """Every branch a decision's rules (or model) may choose is one of its declared `branches:`."""
    declared = list(step.branches)
    for position, composed in enumerate(composition.steps):
        prefix: FindingPath = (
            ("steps", index, "with") if step.uses else ("steps", index, "compose", position, "with")
        )
        for path, branch in composed.primitive.branch_refs(composed.config):
            if branch not in declared:
                add(
                    "UNKNOWN_BRANCH",
                    (*prefix, *path),
                    f"'{branch}' is not a branch of decision '{step.name}'."
                    f"{_near(branch, declared)} Declared branches: {', '.join(declared)}",
                )


def _check_gate(step: GateStep, index: int, add: AddProblem) -> None:
    """A gate waits for people: its deadline is `gate.timeout_s`, and it is never retried."""
    spec = step.gate
    if step.timeout_s is not None:
        add(
            "GATE_STEP_TIMEOUT",
            ("steps", index, "timeout_s"),
            "a gate runs no computation to time out; to bound how long it waits for a decision "
            "set `gate: {timeout_s: ...}` (after it, the gate counts as rejected)",
        )
    if step.retry is not None:
        add(
            "GATE_RETRY",
            ("steps", index, "retry"),
            "a gate is not retried: it pauses the run until someone decides; remove `retry:`",
        )
    seen: set[str] = set()
    for position, name in enumerate(spec.approvers):
        where = ("steps", index, "gate", "approvers", position)
        if not name.strip():
            add("GATE_APPROVER", where, "an approver must be a non-empty name")
        elif name in seen:
            add("GATE_APPROVER", where, f"approver '{name}' is listed twice")
        seen.add(name)


def _check_planning(frame: Frame, step: PlanningStep, index: int, add: AddProblem) -> None:
    """What can be known of a planning step before any plan: its bounds and allowed set."""
    spec = step.planning
    template, catalog = frame.template, frame.catalog
    where = ("steps", index, "planning")
    for position, entry in enumerate(spec.allow):
        name = entry if isinstance(entry, str) else entry.uses
        pinned = {} if isinstance(entry, str) else entry.with_
        at = (*where, "allow", position)
        if name not in catalog:
            add(
                "UNKNOWN_CAPABILITY",
                at,
                f"capability `{name}` not found.{_near(name, catalog.names())} "
                f"Known capabilities: {', '.join(catalog.names())}",
            )
            continue
        config_model = (catalog.primitives.get(name) or catalog.patterns[name]).Config
        try:
            config_model.model_validate(pinned)
        except ValidationError as error:
            for item in error.errors():
                if item["type"] != "missing":  # the planner may supply what is not pinned
                    field = ".".join(str(part) for part in item["loc"])
                    add("INVALID_CONFIG", (*at, "with", *item["loc"]), f"{field}: {item['msg']}")
    if spec.model not in template.models:
        add(
            "UNKNOWN_MODEL_ROLE",
            (*where, "model"),
            f"the planner role '{spec.model}' is not mapped under `models:`; mapped roles: "
            f"{', '.join(sorted(template.models)) or 'none'}",
        )
    for name in spec.sees or []:
        if name not in step.depends_on:
            add(
                "UNKNOWN_REFERENCE",
                (*where, "sees"),
                f"the planner can only see upstream steps; '{name}' is not in depends_on "
                f"({', '.join(step.depends_on) or 'empty'})",
            )
    if spec.max_phases > template.budget.max_planning_phases:
        add(
            "OVER_BUDGET",
            (*where, "max_phases"),
            f"max_phases {spec.max_phases} exceeds budget.max_planning_phases "
            f"{template.budget.max_planning_phases}",
        )
    if spec.max_steps > template.budget.max_steps:
        add(
            "OVER_BUDGET",
            (*where, "max_steps"),
            f"max_steps {spec.max_steps} exceeds budget.max_steps {template.budget.max_steps}",
        )


def _near(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""


def _edge_columns(frame: Frame, upstream: str) -> frozenset[str] | None:
    """The columns `upstream` hands a dependent, when known at load time."""
    source = frame.steps[upstream]
    return source.input_columns if source.kind is StepKind.DECISION else source.output_columns


def _edge_kind(frame: Frame, upstream: str) -> Kind:
    """The kind of value `upstream` hands a dependent (a decision passes its input through)."""
    source = frame.steps[upstream]
    return source.input_kind if source.kind is StepKind.DECISION else source.output_kind


def _resolve(
    catalog: Catalog, step: CapabilityStep, index: int, input_kind: Kind, add: AddProblem
) -> Composition | None:
    try:
        if step.uses is not None:
            return catalog.resolve(step.uses, step.with_, input_kind=input_kind)
        return catalog.compose(step.compose or [], input_kind=input_kind)
    except CompositionError as error:
        for finding in error.findings:
            add(finding.code, ("steps", index, *finding.path), finding.message)
        return None


def _check_references(
    template: Template, step: CapabilityStep, index: int, composition: Composition, add: AddProblem
) -> None:
    where = ("steps", index, "uses" if step.uses else "compose")
    for role in sorted(composition.model_roles - set(template.models)):
        add(
            "UNKNOWN_MODEL_ROLE",
            where,
            f"uses the model role '{role}', which `models:` does not map to a resource; "
            f"mapped roles: {', '.join(sorted(template.models)) or 'none'}",
        )
    for name in sorted(composition.template_inputs - set(template.inputs)):
        add(
            "UNKNOWN_INPUT",
            where,
            f"reads the template input '{name}', which `inputs:` does not declare; "
            f"declared: {', '.join(sorted(template.inputs)) or 'none'}",
        )
    for name in sorted(composition.upstream_refs - set(step.depends_on)):
        add(
            "UNKNOWN_REFERENCE",
            where,
            f"reads the result of step '{name}', which is not in its depends_on "
            f"({', '.join(step.depends_on) or 'empty'}); add it there",
        )


def _with_sentinel(frame: Frame, step: FrameStep, add: AddProblem) -> FrameStep:
    """Pick the value that is present exactly when the converge's shared guard holds."""
    edge_guards = [frame.edge_guard(dep, step.name) for dep in step.step.depends_on]
    if all(not g for g in edge_guards):
        return step  # every upstream always runs: nothing can leave the converge empty
    target = step.guard
    ancestors = frame.ancestors(step.name)
    deciding = (StepKind.DECISION, StepKind.GATE)
    decisions = [s for s in frame if s.kind in deciding and s.name in ancestors]
    for decision in decisions:
        if decision.guard == target:
            return replace(step, sentinel=Sentinel(decision.name, "decided"))
    for decision in decisions:
        for branch in _choices(decision):
            if decision.guard | {(decision.name, branch)} == target:
                return replace(step, sentinel=Sentinel(decision.name, branch))
    add(
        "UNRESOLVABLE_CONVERGENCE",
        ("steps", step.index, "depends_on"),
        f"cannot tell when converge '{step.name}' should run: its upstreams share no decision "
        "it could wait on; make them follow one decision",
    )
    return step


def _choices(step: FrameStep) -> list[str]:
    """The outputs a decision (its branches) or a gate (`approved`) may leave unemitted."""
    if step.kind is StepKind.GATE:
        return [GATE_APPROVED]
    return step.branches
