"""Dry-running a planning step: plan it against real inputs without running the plan.

The steps upstream of the planning step run (in process, on a throwaway instance) so the planner
sees the same results it would in a real run; then the planner is asked, its answers validated,
and the accepted fragment, every rejected attempt and the cost estimate are returned. Nothing the
planner proposes is executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterInvariantViolationError, build_resources

from grammar_ops import ModelError, count_tokens
from marigold_dagster.artifacts import StepValue
from marigold_dagster.errors import MarigoldError, PlanRejected
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.model_binding import model_resources
from marigold_dagster.keys import RESULT, result_op_name
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import PlanOutcome, plan_fragment
from marigold_dagster.records.budget_use import budget_use
from marigold_dagster.runs.local_run import input_run_config, template_path
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.loader import load_template
from marigold_dagster.template.model import StepKind
from resources.pricing import priced_model


@dataclass(frozen=True)
class DryRun:
    """What planning `step` would do: the attempts, the fragment if one was accepted, the cost."""

    template: str
    step: str
    outcome: PlanOutcome
    budget: BudgetStatus
    accepted: bool

    def render(self) -> str:
        outcome = self.outcome
        lines = [f"dry run of planning step '{self.step}' in '{self.template}' (nothing executed)"]
        if outcome.prompt is not None:
            prompt = outcome.prompt
            tokens, prefix = count_tokens(prompt.text), count_tokens(prompt.prefix)
            lines.append(
                f"prompt: {tokens:,} tokens (cl100k), shared prefix {prefix:,} "
                f"({prefix / max(tokens, 1):.0%}), capability tiers 1-{prompt.tier}"
            )
        for name, digest in outcome.digests.items():
            lines.append(f"digest of '{name}' (by the model, in the prompt): {digest[:200]}")
        for name, error in outcome.digest_failures.items():
            lines.append(f"digest of '{name}' failed (structured summary only): {error}")
        for attempt in outcome.attempts:
            verdict = "accepted" if attempt.accepted else "rejected"
            lines.append(f"attempt {attempt.number}: {verdict}")
            lines += [f"  {finding}" for finding in attempt.findings]
        fragment = outcome.fragment
        if fragment is not None:
            lines.append(f"reasoning: {fragment.reasoning}")
            for step in fragment.steps:
                after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
                lines.append(
                    f"  depth {step.depth}: {step.id} = {step.source}{after} "
                    f"({step.input_kind.value} -> {step.output_kind.value}; {step.reason})"
                )
            estimate = fragment.estimate
            lines.append(
                f"estimate: {estimate.steps} steps, ~{estimate.tokens:,} tokens, "
                f"${estimate.cost_usd:.4f}; done: {fragment.done}"
            )
        lines.append(f"budget so far: {self.budget.describe()}")
        return "\n".join(lines)


def dry_run_planning(
    template: str,
    templates_dir: Path,
    step_name: str | None = None,
    inputs: Mapping[str, str] | None = None,
) -> DryRun:
    """Plan `step_name` (default: the template's first planning step) without executing it."""
    frame = load_template(template_path(templates_dir, template))
    step = _planning_step(frame, step_name)
    job = build_defs(templates_dir).resolve_job_def(template)
    ancestors = frame.ancestors(step.name)
    nodes = [result_op_name(frame.steps[name]) for name in step.step.depends_on]
    config = input_run_config(frame, inputs or {})
    if "ops" in config:
        config["ops"] = {k: v for k, v in config["ops"].items() if k in ancestors}
    with DagsterInstance.ephemeral() as instance:
        upstream: dict[str, StepValue] = {}
        run_id = None
        if nodes:
            result = job.execute_in_process(
                run_config={
                    **config,
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                },
                instance=instance,
                op_selection=[f"*{node}" for node in nodes],
                raise_on_error=False,
            )
            if not result.success:
                raise MarigoldError(
                    f"the steps before '{step.name}' failed, so there is nothing to plan from"
                )
            run_id = result.run_id
            for name in step.step.depends_on:
                upstream[name] = _upstream_value(result, frame.steps[name], step.name)
        used = budget_use(instance, run_id) if run_id else BudgetUse()
        status = BudgetStatus(frame.template.budget, used)
        primary = step.step.depends_on[0] if step.step.depends_on else None
        request = plan_request(frame, step, PlanProgress(upstream, primary), status, phase=1)
        key = frame.template.models[step.planning.model]
        with build_resources(model_resources([key])) as resources:
            try:
                outcome = plan_fragment(priced_model(key, getattr(resources, key)), request)
                accepted = True
            except PlanRejected as rejected:
                outcome, accepted = rejected.outcome, False
            except ModelError as error:  # transient: a run would retry the step
                raise MarigoldError(
                    f"the planner call of '{step.name}' failed ({error}); nothing was planned, "
                    "try again"
                ) from error
    return DryRun(frame.name, step.name, outcome, status, accepted)


def _planning_step(frame: Frame, name: str | None) -> FrameStep:
    planning = [step for step in frame if step.kind is StepKind.PLANNING]
    if name is None:
        if not planning:
            raise MarigoldError(f"template '{frame.name}' has no planning step")
        return planning[0]
    if name not in frame.steps or frame.steps[name].kind is not StepKind.PLANNING:
        names = ", ".join(step.name for step in planning) or "none"
        raise MarigoldError(
            f"'{name}' is not a planning step of '{frame.name}'; its planning steps: {names}"
        )
    return frame.steps[name]


def _upstream_value(result: object, upstream: FrameStep, planning_step: str) -> StepValue:
    output = planning_step if upstream.kind is StepKind.DECISION else RESULT
    try:
        return result.output_for_node(result_op_name(upstream), output)  # type: ignore[attr-defined]
    except DagsterInvariantViolationError:
        if upstream.kind is StepKind.DECISION:
            raise MarigoldError(
                f"decision '{upstream.name}' did not choose '{planning_step}' for these inputs: "
                "a run would not plan it"
            ) from None
        raise MarigoldError(f"step '{upstream.name}' produced no result") from None
