"""The ops of human gates: the gate step itself and the job that records a decision.

A gate step never waits inside a worker. When its run reaches it with no decision recorded,
the op fails with `PAUSED_AT_GATE` in the failure metadata (the prompt, who may decide, the
command and the job to decide with), so the run ends there and holds nothing; the steps below
the gate do not run. After a decision, the run is re-executed from failure: nothing before the
gate runs again, and the re-executed gate op reads the decision:

- approve: the gate emits `approved`, its input passed through, and the branch below runs;
- reject (or `timeout_s` passed without a decision): `approved` is not emitted, so Dagster
  skips everything below the gate and the run succeeds; `decided` says who rejected and why.

`decided` is always emitted once the gate has a decision, as a decision's is, so a converge
below the gate can use it as its sentinel.
"""

from collections.abc import Iterator, Mapping

from dagster import (
    Enum,
    EnumValue,
    Failure,
    Field,
    In,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    job,
    op,
)

from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue
from marigold_dagster.errors import GateDecisionError
from marigold_dagster.jobs.step_ops import op_tags
from marigold_dagster.keys import (
    APPROVED,
    DECIDED,
    DECISION_JOB,
    DECISION_OP,
    PAUSED_AT_GATE,
)
from marigold_dagster.records.gate_decisions import (
    record_decision,
)
from marigold_dagster.records.principals import run_tag_principal
from marigold_dagster.runtime.gates import pass_gate
from marigold_dagster.template.frame import Frame, FrameStep


def build_gate_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A gate: pause the run until someone decides, then pass the input on or end the branch."""
    declared = list(step.step.depends_on)

    def compute(context: OpExecutionContext, inputs: Mapping[str, StepValue]) -> Iterator[Output]:
        yield from pass_gate(context, frame, step, inputs)

    return OpDefinition(
        compute_fn=compute,
        name=step.name,
        ins={dep: In(StepValue) for dep in declared},
        outs={APPROVED: Out(StepValue, is_required=False), DECIDED: Out(StepValue)},
        description=describe_gate(step),
        tags=op_tags(frame, step),
        pool=step.step.pool,
    )


def describe_gate(step: FrameStep) -> str:
    if step.step.description:
        return step.step.description
    spec = step.gate
    return f"gate: {spec.prompt}"


DECISION_CHOICES = Enum("GateDecision", [EnumValue("approve"), EnumValue("reject")])


@op(
    name=DECISION_OP,
    config_schema={
        "run_id": Field(str, description="The paused run (its gate step failed with the prompt)."),
        "step": Field(str, description="The gate step's name."),
        "decision": Field(DECISION_CHOICES, description="approve or reject."),
        "by": Field(
            str,
            description=(
                "The approver name you decide as; the run's authenticated user must be allowed "
                "to act as it (MARIGOLD_APPROVERS)."
            ),
        ),
        "reason": Field(str, description="Why; kept with the decision for audit."),
    },
    tags={keys.STEP_KIND_TAG: "gate_decision"},
)
def record_gate_decision(context: OpExecutionContext) -> None:
    """Record the decision on the paused run's gate."""
    config = context.op_config
    try:
        # The worker's OS user is not who clicked Launch: the deployment's authentication is.
        principal = run_tag_principal(context.dagster_run.tags)
        recorded = record_decision(
            context.instance,
            config["run_id"],
            config["step"],
            config["decision"],
            by=config["by"],
            reason=config["reason"],
            principal=principal,
        )
    except GateDecisionError as error:
        raise Failure(str(error), allow_retries=False) from error
    context.log.info(
        f"gate '{recorded.step}' of run {recorded.run_id} {recorded.describe()}; "
        "open that run and click 'Re-execute from failure' to resume it"
    )


@job(
    name=DECISION_JOB,
    description=(
        "Approve or reject a run paused at a Marigold gate. Launch with config "
        f"ops.{DECISION_OP}.config = {{run_id, step, decision: approve|reject, by, reason}}; "
        "the decision is recorded in this instance (an observation of asset "
        "[template, step, gate]). Then open the paused run and "
        "click 'Re-execute from failure' (or run `marigold resume RUN_ID`): steps before the "
        "gate do not run again, and the gate passes its input on or ends its branch. The "
        "decider is the user in the run tag named by MARIGOLD_GATE_PRINCIPAL_TAG, which the "
        "deployment's authentication must set; without it this job refuses to decide."
    ),
    tags={keys.KIND_TAG: "gate_decision"},
)
def gate_decision_job() -> None:
    record_gate_decision()


__all__ = ["APPROVED", "PAUSED_AT_GATE", "build_gate_op", "gate_decision_job"]
