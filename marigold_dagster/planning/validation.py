"""Fragment validation: every rule a plan must meet before any of it runs.

Stages, each producing findings with stable codes and messages a planner can act on:
schema (`SCHEMA`), capability references (`UNKNOWN_CAPABILITY`, `NOT_ALLOWED`,
`COMPOSITION_NOT_ALLOWED`), compositions and configs (`INVALID_CONFIG`, `KIND_MISMATCH`, ...),
the frame (`FRAME_VIOLATION`: template step names, convergence or branching keys), ids
(`INVALID_ID`, `DUPLICATE_ID`), input references (`DANGLING_REFERENCE`), acyclicity (`CYCLE`),
bounds (`TOO_MANY_STEPS`, `TOO_DEEP`, `OVER_FANOUT`, `TOO_MANY_CHILDREN`, `OVER_BUDGET`),
the output contract (`OUTPUT_CONTRACT`) and `EMPTY_NOT_DONE`. A fragment is
accepted only when there are no findings at all.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import ValidationError

from grammar_ops import Catalog, Composition, CompositionError, Finding, GrammarError, Kind
from grammar_ops.findings import FindingPath, render_path
from grammar_ops.primitives.transform import evaluate_per_row
from grammar_ops.tokens import count_tokens
from marigold_dagster.graphs import depths as graph_depths
from marigold_dagster.graphs import find_cycle
from marigold_dagster.planning.budget import (
    BudgetStatus,
    BudgetUse,
    estimate_model_tokens,
    estimated_answer_tokens,
    estimated_prompt_tokens,
)
from marigold_dagster.planning.fragment import (
    PLANNED_ID_PATTERN,
    Fragment,
    PlannedStepSpec,
    fragment_json_schema,
    nested_deeper_than,
)

FRAME_KEYS = {"kind", "branches", "converge", "batch", "planning", "gate", "steps", "template"}
MAX_NESTING = 64
MAX_ECHO_CHARS = 120
MAX_MESSAGE_CHARS = 400
MAX_FINDINGS = 50
"""Findings a verdict keeps; past it, one `TOO_MANY_FINDINGS` says how many more there were."""
MAX_LISTED_NAMES = 20
"""Names a finding lists ("results available: ..."), so no finding grows with the plan."""


@dataclass(frozen=True)
class PlanningScope:
    """What a fragment may refer to and how much it may create.

    Attributes:
        step: the planning step's name.
        template_steps: every step name of the template (the frame a plan may not touch).
        results: results a planned step may depend on (visible upstream steps and the steps
            of earlier phases), with their kind and row count.
        primary: the result a planned step with no depends_on receives.
        presets: allowed capability -> config the template pins (the plan's `with` is merged
            over it).
        composable: primitives a dynamic composition may use.
        budget: the task budget as used so far, or None to skip budget checks.
        usd_per_token: the worker model's blended price, for cost estimates.
        samples: rows of each result (up to a few hundred), so estimates see how many rows a
            filter keeps and how long the texts a per-row model call reads are.
        output_columns: the output contract: columns the rows of the plan's terminal steps
            must have (checked on a fragment that is done, or of the last phase).
        last_phase: whether no phase can follow this one.
        max_children: the most planned steps that may depend directly on any one step (a
            planned step or a result; a step without depends_on depends on `primary`).
    """

    step: str
    template_steps: frozenset[str]
    results: Mapping[str, tuple[Kind, int | None]]
    primary: str | None
    presets: Mapping[str, Mapping[str, Any]]
    catalog: Catalog
    max_steps: int
    max_depth: int
    max_fanout: int = 64
    allow_dynamic_composition: bool = False
    composable: frozenset[str] = frozenset()
    budget: BudgetStatus | None = None
    usd_per_token: float = 0.0
    max_children: int | None = None
    samples: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    output_columns: tuple[str, ...] = ()
    last_phase: bool = True

    def json_schema(self) -> dict[str, Any]:
        return fragment_json_schema(
            self.presets,
            max_steps=self.max_steps,
            allow_dynamic_composition=self.allow_dynamic_composition,
            composable=self.composable,
        )


@dataclass(frozen=True)
class ValidatedStep:
    """A planned step that passed validation, ready to run."""

    id: str
    composition: Composition
    uses: str | None
    config: dict[str, Any]
    compose: tuple[dict[str, Any], ...] | None
    depends_on: tuple[str, ...]
    depth: int
    reason: str
    input_kind: Kind
    output_kind: Kind
    estimated_tokens: int

    @property
    def source(self) -> str:
        return self.composition.source


@dataclass(frozen=True)
class ValidatedFragment:
    reasoning: str
    done: bool
    steps: tuple[ValidatedStep, ...]
    estimate: BudgetUse

    def by_depth(self, depth: int) -> list[ValidatedStep]:
        return [step for step in self.steps if step.depth == depth]


@dataclass
class Verdict:
    """The outcome of validating one answer: the fragment, or every finding."""

    findings: list[Finding] = field(default_factory=list)
    fragment: ValidatedFragment | None = None

    @property
    def accepted(self) -> bool:
        return self.fragment is not None and not self.findings


def validate_fragment(answer: Any, scope: PlanningScope) -> Verdict:
    """Validate a planner answer (parsed JSON, or text to parse) against `scope`.

    Never raises for any answer: every problem becomes a finding. A problem two stages both
    see (an unknown capability: the schema's enum and the catalog) is reported once.
    """
    verdict = _validate(answer, scope)
    unique = list(dict.fromkeys(verdict.findings))
    if len(unique) > MAX_FINDINGS:
        more = len(unique) - (MAX_FINDINGS - 1)
        unique = unique[: MAX_FINDINGS - 1] + [
            Finding(
                "TOO_MANY_FINDINGS",
                (),
                f"{more} more problems are not listed; fix the ones above and look again",
            )
        ]
    verdict.findings[:] = unique
    return verdict


def _validate(answer: Any, scope: PlanningScope) -> Verdict:
    verdict = Verdict()
    findings = verdict.findings
    if isinstance(answer, (str, bytes)):
        try:
            answer = json.loads(answer)
        except RecursionError:
            answer = _TOO_DEEP
        except ValueError as error:
            findings.append(Finding("SCHEMA", (), f"the answer is not JSON: {error}"))
            return verdict
    if answer is _TOO_DEEP or nested_deeper_than(answer, MAX_NESTING):
        findings.append(
            Finding(
                "SCHEMA",
                (),
                f"the answer nests more than {MAX_NESTING} levels deep; a fragment is "
                "{reasoning, steps: [{id, uses, with, depends_on, reason}], done}",
            )
        )
        return verdict
    for where in sorted(_frame_keys(answer), key=render_path):
        findings.append(
            Finding(
                "FRAME_VIOLATION",
                where,
                f"`{where[-1]}` belongs to the template's frame; a plan may only "
                "add steps {id, uses|compose, with, depends_on, reason} inside its segment",
            )
        )
    structural = False
    for schema_error in _schema_errors(answer, scope)[:20]:
        finding = _schema_finding(schema_error, scope)
        if finding is not None:
            findings.append(finding)
            structural = structural or finding.code == "SCHEMA"
    if structural or any(f.code == "FRAME_VIOLATION" for f in findings):
        return verdict
    try:
        fragment = Fragment.model_validate(answer)
    except ValidationError as error:  # the schema above should make this unreachable
        findings.append(Finding("SCHEMA", (), str(error)))
        return verdict

    if not fragment.steps and not fragment.done:
        findings.append(
            Finding("EMPTY_NOT_DONE", ("steps",), "a fragment with no steps must set done: true")
        )
    ids = _check_ids(fragment, scope, findings)
    depths = _check_references(fragment, scope, ids, findings)
    if len(fragment.steps) > scope.max_steps:
        findings.append(_too_many_steps(len(fragment.steps), scope))
    widest = max(Counter(depths.values()).values(), default=0)
    if widest > scope.max_fanout:
        findings.append(
            Finding(
                "OVER_FANOUT",
                ("steps",),
                f"{widest} steps at one depth would fan out past max_fanout "
                f"{scope.max_fanout}; chain or merge steps",
            )
        )
    _check_children(fragment, scope, findings)
    validated = _check_steps(fragment, scope, depths, findings)
    if not findings and (fragment.done or scope.last_phase):
        _check_output(fragment, scope, validated, findings)
    if findings:
        return verdict
    estimate = BudgetUse(
        steps=len(validated),
        tokens=sum(step.estimated_tokens for step in validated),
        cost_usd=sum(step.estimated_tokens for step in validated) * scope.usd_per_token,
    )
    if scope.budget is not None:
        for ceiling in scope.budget.exceeded(estimate):
            findings.append(
                Finding(
                    "OVER_BUDGET",
                    ("steps",),
                    f"the plan would take the task past {ceiling}; the task has "
                    f"{_remaining(scope.budget)} left: plan fewer or cheaper steps",
                )
            )
    if findings:
        return verdict
    verdict.fragment = ValidatedFragment(
        fragment.reasoning, fragment.done, tuple(validated), estimate
    )
    return verdict


_TOO_DEEP = object()


def _shorten(text: str, limit: int) -> str:
    """`text`, cut in the middle when longer than `limit` (findings go back into prompts)."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def _echo(value: Any) -> str:
    return _shorten(repr(value), MAX_ECHO_CHARS)


def _remaining(status: BudgetStatus) -> str:
    left = status.remaining
    return (
        f"{max(left.steps, 0)} steps, {max(left.tokens, 0):,} tokens and "
        f"${max(left.cost_usd, 0):.2f}"
    )


def _frame_keys(answer: Any) -> set[FindingPath]:
    """Frame keys (kind, branches, converge, ...) anywhere a plan might try to put them."""
    found: set[FindingPath] = set()
    if not isinstance(answer, dict):
        return found
    found |= {(key,) for key in answer if key in FRAME_KEYS and key != "steps"}
    steps = answer.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            found |= {("steps", index, key) for key in step if key in FRAME_KEYS}
    return found


def _schema_errors(answer: Any, scope: PlanningScope) -> list[jsonschema.ValidationError]:
    """Schema errors in document order; a step that fits neither form (`uses` or `compose`)
    gives the errors of the form it tried (the one whose key it has)."""
    errors: list[jsonschema.ValidationError] = []
    for error in jsonschema.Draft202012Validator(scope.json_schema()).iter_errors(answer):
        if error.validator == "anyOf" and error.context:
            tried = 1 if isinstance(error.instance, dict) and "compose" in error.instance else 0
            errors.extend(e for e in error.context if e.schema_path[0] == tried)
        else:
            errors.append(error)
    return sorted(errors, key=lambda e: [(isinstance(p, str), p) for p in e.absolute_path])


def _schema_finding(error: jsonschema.ValidationError, scope: PlanningScope) -> Finding | None:
    """The finding for one schema error: the precise code where a later stage has one."""
    path = list(error.absolute_path)
    where: FindingPath = tuple(path)
    if error.validator == "maxItems" and path == ["steps"]:
        return _too_many_steps(len(error.instance), scope)
    if error.validator == "enum" and path[-1:] == ["uses"]:
        return _capability_finding(error.instance, where, scope)
    if error.validator == "enum" and path[-1:] == ["use"]:
        return _capability_finding(error.instance, where, scope, composed=True)
    if error.validator == "pattern" and path[-1:] == ["id"]:
        return Finding("INVALID_ID", where, _id_message(error.instance))
    composing = scope.allow_dynamic_composition and scope.composable
    if (
        not composing
        and error.validator in {"required", "additionalProperties"}
        and len(path) == 2
        and isinstance(error.instance, dict)
        and "compose" in error.instance
    ):
        return _composition_not_allowed((*where, "compose"), scope)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = set(error.instance) - set(error.schema.get("properties", {}))
        if extra and extra <= FRAME_KEYS:
            return None  # reported as FRAME_VIOLATION
    return Finding("SCHEMA", where, _schema_message(error))


def _composition_not_allowed(where: FindingPath, scope: PlanningScope) -> Finding:
    return Finding(
        "COMPOSITION_NOT_ALLOWED",
        where,
        "this planning step does not allow dynamic composition; use one of: "
        + ", ".join(sorted(scope.presets)),
    )


def _too_many_steps(count: int, scope: PlanningScope) -> Finding:
    return Finding(
        "TOO_MANY_STEPS",
        ("steps",),
        f"{count} steps, but this planning step allows at most {scope.max_steps}; "
        "merge or drop steps",
    )


def _capability_finding(
    name: Any, where: FindingPath, scope: PlanningScope, *, composed: bool = False
) -> Finding:
    """`NOT_ALLOWED` for a catalog capability outside the allowed set, else `UNKNOWN_CAPABILITY`."""
    code = (
        "NOT_ALLOWED" if isinstance(name, str) and name in scope.catalog else "UNKNOWN_CAPABILITY"
    )
    if composed:
        return Finding(
            code,
            where,
            f"primitive {_echo(name)} may not be composed here; composable: "
            f"{', '.join(sorted(scope.composable))}",
        )
    return Finding(
        code,
        where,
        f"handler {_echo(name)} not found; allowed: {', '.join(sorted(scope.presets))}",
    )


def _schema_message(error: jsonschema.ValidationError) -> str:
    message = _shorten(error.message, MAX_MESSAGE_CHARS)
    if error.validator in {"required", "additionalProperties"}:
        keys = ", ".join(error.schema.get("properties", {}))
        return f"{message}; the keys here are: {keys}"
    return message


def _id_message(value: Any) -> str:
    return (
        f"id {_echo(value)} must start with a letter and use only letters, digits and "
        "underscores (at most 48)"
    )


def _check_ids(fragment: Fragment, scope: PlanningScope, findings: list[Finding]) -> set[str]:
    ids: set[str] = set()
    for index, step in enumerate(fragment.steps):
        where = ("steps", index, "id")
        if not re.fullmatch(PLANNED_ID_PATTERN, step.id):
            findings.append(Finding("INVALID_ID", where, _id_message(step.id)))
        elif step.id in scope.template_steps:
            findings.append(
                Finding(
                    "FRAME_VIOLATION",
                    where,
                    f"'{step.id}' is a template step; a plan cannot add, replace or rewire "
                    "template steps: choose another id",
                )
            )
        elif step.id in ids or step.id in scope.results:
            holder = "an earlier step of this fragment" if step.id in ids else "an existing result"
            findings.append(
                Finding(
                    "DUPLICATE_ID",
                    where,
                    f"id '{step.id}' is already used by {holder}; give each step a new, unique id",
                )
            )
        ids.add(step.id)
    return ids


def _check_references(
    fragment: Fragment, scope: PlanningScope, ids: set[str], findings: list[Finding]
) -> dict[str, int]:
    """Check depends_on; return each step's depth (1 + deepest planned dependency)."""
    graph: dict[str, list[str]] = {}
    available = ""
    for index, step in enumerate(fragment.steps):
        graph[step.id] = []
        for position, ref in enumerate(step.depends_on):
            where = ("steps", index, "depends_on", position)
            if ref in ids:
                graph[step.id].append(ref)
            elif ref in scope.results:
                continue
            elif ref in scope.template_steps:
                available = available or _available(scope, ids)
                findings.append(
                    Finding(
                        "DANGLING_REFERENCE",
                        where,
                        f"'{ref}' is a template step whose result this planning step cannot "
                        f"see; results available: {available}",
                    )
                )
            else:
                available = available or _available(scope, ids)
                findings.append(
                    Finding(
                        "DANGLING_REFERENCE",
                        where,
                        f"'{ref}' is not a step or result; results available: {available}",
                    )
                )
    cycle = find_cycle(graph)
    if cycle:
        findings.append(
            Finding(
                "CYCLE", ("steps",), f"steps depend on each other in a cycle: {' -> '.join(cycle)}"
            )
        )
        return {}
    depths = graph_depths(graph)
    for index, step in enumerate(fragment.steps):
        if depths[step.id] > scope.max_depth:
            findings.append(
                Finding(
                    "TOO_DEEP",
                    ("steps", index, "depends_on"),
                    f"'{step.id}' sits at depth {depths[step.id]} (a chain of that many planned "
                    f"steps), but this planning step allows depth {scope.max_depth}; "
                    "depend on fewer planned steps in a row",
                )
            )
    return depths


def _check_children(fragment: Fragment, scope: PlanningScope, findings: list[Finding]) -> None:
    """`TOO_MANY_CHILDREN`: more planned steps depend directly on one step than allowed."""
    if scope.max_children is None:
        return
    children: Counter[str] = Counter()
    for step in fragment.steps:
        parents = step.depends_on or ([scope.primary] if scope.primary else [])
        children.update(dict.fromkeys(parents, 1))
    for parent, count in sorted(children.items()):
        if count > scope.max_children:
            findings.append(
                Finding(
                    "TOO_MANY_CHILDREN",
                    ("steps",),
                    f"{count} planned steps depend directly on '{parent}', but this planning "
                    f"step allows at most {scope.max_children} per step; chain some of them "
                    "after another step, or merge them into fewer steps",
                )
            )


def _available(scope: PlanningScope, ids: set[str]) -> str:
    """The results a planned step may depend on, at most `MAX_LISTED_NAMES` of them."""
    names = sorted(set(scope.results) | ids)
    if len(names) > MAX_LISTED_NAMES:
        return ", ".join(names[:MAX_LISTED_NAMES]) + f" and {len(names) - MAX_LISTED_NAMES} more"
    return ", ".join(names) or "none"


def _check_steps(
    fragment: Fragment,
    scope: PlanningScope,
    depths: dict[str, int],
    findings: list[Finding],
) -> list[ValidatedStep]:
    if not depths and fragment.steps:
        return []
    kinds: dict[str, Kind] = {name: kind for name, (kind, _) in scope.results.items()}
    rows: dict[str, int | None] = {name: count for name, (_, count) in scope.results.items()}
    samples: dict[str, Sequence[Mapping[str, Any]] | None] = dict(scope.samples)
    specs = {step.id: step for step in fragment.steps}
    positions: dict[str, int] = {}
    for position, step in enumerate(fragment.steps):
        positions.setdefault(step.id, position)
    validated: list[ValidatedStep] = []
    for step_id in sorted(specs, key=lambda s: (depths.get(s, 0), positions[s])):
        spec = specs[step_id]
        index = positions[step_id]
        source = spec.depends_on[0] if spec.depends_on else scope.primary
        input_kind = kinds.get(source, Kind.NOTHING) if source else Kind.NOTHING
        resolved = _composition(spec, index, scope, input_kind, findings)
        if resolved is None:
            continue
        composition, config, compose = resolved
        output_kind = composition.output_kind(input_kind)
        kinds[step_id] = output_kind
        calls = rows.get(source) if source else None
        sample = samples.get(source) if source else None
        tokens = 0
        for composed in composition.steps:
            settings = composed.config.model_dump(by_alias=True)
            if composed.primitive.name == "transform.filter" and sample:
                calls, sample = _filtered(settings.get("where"), calls, sample)
            if composed.primitive.model_role(composed.config) is None:
                continue
            per_row = composed.primitive.model_calls == "per_row"
            answer = estimated_answer_tokens([settings])
            prompt = estimated_prompt_tokens(settings, sample if per_row else None, count_tokens)
            tokens += estimate_model_tokens((calls or 1) if per_row else 1, answer, prompt)
        rows[step_id] = calls
        samples[step_id] = sample
        validated.append(
            ValidatedStep(
                id=step_id,
                composition=composition,
                uses=spec.uses,
                config=config,
                compose=compose,
                depends_on=tuple(spec.depends_on),
                depth=depths[step_id],
                reason=spec.reason,
                input_kind=input_kind,
                output_kind=output_kind,
                estimated_tokens=tokens,
            )
        )
    return validated


def _filtered(
    where: Any, rows: int | None, sample: Sequence[Mapping[str, Any]]
) -> tuple[int | None, Sequence[Mapping[str, Any]]]:
    """Rows a filter keeps, scaled from the share of the sample it keeps, and those rows."""
    if not isinstance(where, str):
        return rows, sample
    try:
        keep = evaluate_per_row(where, [dict(row) for row in sample], "transform.filter")
    except (GrammarError, ValueError, TypeError):
        return rows, sample
    kept = [row for row, passed in zip(sample, keep, strict=True) if passed]
    if rows is None:
        return None, kept
    return round(rows * len(kept) / len(sample)), kept


# Primitives whose rows keep the columns they were given.
KEEPS_COLUMNS = {"transform.filter", "validate.json_schema", "validate.rules", "assert.condition"}


def columns_after(composition: Composition, columns: set[str] | None) -> set[str] | None:
    """The columns `composition` produces from rows with `columns`, through the primitives'
    output contracts; None where a primitive's columns are not known here."""
    for composed in composition.steps:
        if columns is None:
            return None
        name = composed.primitive.name
        config = composed.config.model_dump(by_alias=True)
        if name in KEEPS_COLUMNS:
            continue
        if name == "transform.select":
            columns = set(config["fields"])
        elif name == "transform.rename":
            columns = {config["fields"].get(column, column) for column in columns}
        elif name == "transform.derive":
            columns = columns | set(config["fields"])
        elif name == "aggregate.count":
            columns = set(config["by"]) | {config["output_field"]}
        elif name == "aggregate.group":
            columns = set(config["by"]) | {metric["name"] for metric in config["metrics"]}
        elif name == "llm.classify":
            columns = columns | {config["output_field"]}
        elif name == "llm.extract":
            properties = config["schema"].get("properties", {})
            columns = columns | {config.get("prefix", "") + str(p) for p in properties}
        else:
            return None
    return columns


def columns_read(composition: Composition) -> set[str]:
    """The columns a composition reads from its input rows, where its first primitive's
    configuration names them (`field`, `by`, `on`, selected, renamed or aggregated fields)."""
    if not composition.steps:
        return set()
    first = composition.steps[0]
    name, settings = first.primitive.name, first.config.model_dump(by_alias=True)
    read: set[str] = set()
    if isinstance(settings.get("field"), str):
        read.add(settings["field"])
    for key in ("by", "on"):
        value = settings.get(key)
        if isinstance(value, list):
            read |= {str(v) for v in value}
    if name in ("transform.select", "transform.rename"):
        read |= {str(v) for v in settings["fields"]}
    if name == "aggregate.group":
        read |= {str(metric["field"]) for metric in settings["metrics"]}
    return read


def _check_output(
    fragment: Fragment,
    scope: PlanningScope,
    validated: list[ValidatedStep],
    findings: list[Finding],
) -> None:
    """`OUTPUT_CONTRACT`: a terminal step whose rows would lack a column the contract needs."""
    if not scope.output_columns or not validated:
        return
    needed = set(scope.output_columns) - {"planned_step"}  # the planning step adds it
    columns: dict[str, set[str] | None] = {
        name: set(rows[0]) if rows else None for name, rows in scope.samples.items()
    }
    consumed = {dep for step in fragment.steps for dep in step.depends_on}
    for step in validated:  # in depth order: dependencies first
        source = step.depends_on[0] if step.depends_on else scope.primary
        columns[step.id] = columns_after(step.composition, columns.get(source) if source else None)
    for step in validated:
        produced = columns[step.id]
        if step.id in consumed or produced is None:
            continue
        missing = sorted(needed - produced)
        if missing:
            findings.append(
                Finding(
                    "OUTPUT_CONTRACT",
                    ("steps", _position(fragment, step.id)),
                    f"'{step.id}' ends the plan, but its rows would lack {missing} (it produces "
                    f"{sorted(produced)}); the planning step's result must have "
                    f"{sorted(needed)}: end the plan with steps that produce them",
                )
            )


def _position(fragment: Fragment, step_id: str) -> int:
    return next(i for i, step in enumerate(fragment.steps) if step.id == step_id)


def _composition(
    spec: PlannedStepSpec,
    index: int,
    scope: PlanningScope,
    input_kind: Kind,
    findings: list[Finding],
) -> tuple[Composition, dict[str, Any], tuple[dict[str, Any], ...] | None] | None:
    """The step's composition, its config (pins applied) and its compose entries (pins applied).

    A composed primitive is held to the same pins as using it directly: the template's preset
    for it is merged under each entry's `with`.
    """
    where: FindingPath = ("steps", index)
    try:
        if spec.compose is not None:
            if not (scope.allow_dynamic_composition and scope.composable):
                findings.append(_composition_not_allowed((*where, "compose"), scope))
                return None
            outside = [
                _capability_finding(
                    e.get("use"), (*where, "compose", i, "use"), scope, composed=True
                )
                for i, e in enumerate(spec.compose)
                if e.get("use") not in scope.composable
            ]
            if outside:
                findings.extend(outside)
                return None
            entries: list[dict[str, Any]] = []
            for position, entry in enumerate(spec.compose):
                use = entry["use"]
                given = entry.get("with") or {}
                if not isinstance(given, Mapping):
                    entries.append(dict(entry))
                    continue
                pinned = scope.presets.get(use, {})
                located = (*where, "compose", position, "with")
                merged = _pinned_config(use, pinned, given, located, findings)
                if merged is not None:
                    entries.append({"use": use, "with": merged})
            if len(entries) < len(spec.compose):
                return None
            composition = scope.catalog.compose(
                entries, input_kind=input_kind, location=(*where, "compose")
            )
            config: dict[str, Any] = {}
            compose: tuple[dict[str, Any], ...] | None = tuple(entries)
        else:
            assert spec.uses is not None
            if spec.uses not in scope.presets:
                findings.append(_capability_finding(spec.uses, (*where, "uses"), scope))
                return None
            merged = _pinned_config(
                spec.uses, scope.presets[spec.uses], spec.with_, (*where, "with"), findings
            )
            if merged is None:
                return None
            config = merged
            compose = None
            composition = scope.catalog.resolve(
                spec.uses, config, input_kind=input_kind, location=where
            )
    except CompositionError as error:
        findings.extend(_located(finding, where) for finding in error.findings)
        return None
    if composition.template_inputs:
        findings.append(
            Finding(
                "NOT_ALLOWED",
                (*where, "uses" if spec.compose is None else "compose"),
                "planned steps cannot read template inputs; depend on the result of the "
                "step that loaded them",
            )
        )
        return None
    unread = sorted(composition.upstream_refs - set(spec.depends_on))
    if unread:
        findings.append(
            Finding(
                "DANGLING_REFERENCE",
                (*where, "with" if spec.compose is None else "compose"),
                f"the step reads {unread} but does not depend on them; a step can only read "
                "results it lists in depends_on",
            )
        )
        return None
    return composition, config, compose


def _pinned_config(
    name: str,
    pinned: Mapping[str, Any],
    given: Mapping[str, Any],
    where: FindingPath,
    findings: list[Finding],
) -> dict[str, Any] | None:
    """`given` merged over the template's pins for `name`, or None with a finding.

    Pinned values win even where `given` only compares equal to them (`1 == True`), so what
    runs is exactly what the template pinned.
    """
    changed = sorted(k for k in given if k in pinned and given[k] != pinned[k])
    if changed:
        findings.append(
            Finding(
                "PINNED_CONFIG",
                where,
                f"the template pins {changed} for '{name}'; leave them out or "
                f"use the pinned values { ({k: pinned[k] for k in changed}) }",
            )
        )
        return None
    if "path" in given:
        findings.append(
            Finding(
                "PINNED_CONFIG",
                (*where, "path"),
                "a plan cannot choose file paths; read results through depends_on",
            )
        )
        return None
    return {**pinned, **{k: v for k, v in given.items() if k not in pinned}}


def _located(finding: Finding, where: FindingPath) -> Finding:
    if finding.path[: len(where)] == where:
        return finding
    return finding.at(*where)
