"""The `marigold approve`, `marigold reject` and `marigold resume` commands for gates.

`approve`/`reject` record who decided a paused gate and why (the approver name, and the OS user
running the command, which must be allowed to act as it: see `records.principals`) (see
`marigold_dagster.records.gate_decisions`), then resume the run from the gate (see
`marigold_dagster.runs.resume`) unless `--no-resume` is given. `resume` re-executes a paused run
from failure without deciding: for a gate decided from the Launchpad, or one whose timeout passed.

    marigold approve 5f0c... --step sign_off --by alice --reason "figures checked"
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from dagster import DagsterInstance

from marigold_dagster.errors import MarigoldError
from marigold_dagster.records.gate_decisions import GateDecision, record_decision
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.principals import Principal, os_user_principal
from marigold_dagster.runs.resume import ResumedRun, resume_run

DEFAULT_DEFINITIONS = Path("definitions.py")

_definitions_option = click.option(
    "--definitions",
    "definitions_file",
    type=click.Path(path_type=Path),
    default=DEFAULT_DEFINITIONS,
    show_default=True,
    help="The project's definitions file; the run's job is rebuilt from it to resume.",
)


@dataclass(frozen=True)
class GateOutcome:
    """A recorded gate decision and, unless asked not to, the run it was resumed as."""

    decision: GateDecision
    resumed: ResumedRun | None


def decide_gate(
    instance: DagsterInstance,
    run_id: str,
    step: str,
    decision: str,
    *,
    by: str,
    reason: str,
    definitions_file: str | Path,
    principal: Principal | None = None,
    resume: bool = True,
    on_recorded: Callable[[GateDecision], None] | None = None,
) -> GateOutcome:
    """Record `by`'s decision on gate `step` of paused run `run_id`, then resume the run.

    `principal` is who is deciding as the platform checked it (default: the OS user running
    this process); `on_recorded` is told of the decision before the (longer) resume starts.

    Raises:
        GateDecisionError: the decision cannot be recorded (see `record_decision`).
        MarigoldError: the run cannot be resumed (see `resume_run`).
    """
    recorded = record_decision(
        instance, run_id, step, decision, by=by, reason=reason, principal=principal
    )
    if on_recorded is not None:
        on_recorded(recorded)
    if not resume:
        return GateOutcome(recorded, None)
    resumed = resume_run(instance, run_id, definitions_file, log_level="WARNING")
    return GateOutcome(recorded, resumed)


def _decide(
    decision: str,
    run_id: str,
    step: str,
    by: str,
    reason: str,
    definitions_file: Path,
    no_resume: bool,
) -> None:
    try:
        instance, _ = open_instance(Path.cwd())
        with instance:
            principal = os_user_principal()
            outcome = decide_gate(
                instance,
                run_id,
                step,
                decision,
                by=by or principal.name,
                reason=reason,
                principal=principal,
                definitions_file=definitions_file,
                resume=not no_resume,
                on_recorded=lambda d: click.echo(
                    f"gate '{step}' of run {run_id} {d.describe()} (checked: {principal})"
                ),
            )
            if outcome.resumed is None:
                click.echo(f"resume it with: marigold resume {run_id}")
                return
            _report(outcome.resumed)
    except MarigoldError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


def _resume(instance: DagsterInstance, run_id: str, definitions_file: Path) -> None:
    _report(resume_run(instance, run_id, definitions_file, log_level="WARNING"))


def _report(resumed: ResumedRun) -> None:
    click.echo(f"resumed run {resumed.parent_run_id} as run {resumed.run_id}: {resumed.status}")
    if not resumed.success:
        sys.exit(1)


def _decision_command(decision: str, verb: str) -> click.Command:
    @click.command(name=decision, help=f"{verb} gate STEP of paused run RUN_ID, then resume it.")
    @click.argument("run_id")
    @click.option("--step", required=True, help="The gate step the run is paused at.")
    @click.option(
        "--by",
        default="",
        help=(
            "The approver name you decide as (default: your OS user name). Your OS user must be "
            "allowed to act as it: the same name, or an entry of the MARIGOLD_APPROVERS file."
        ),
    )
    @click.option("--reason", required=True, help="Why; kept with the decision for audit.")
    @_definitions_option
    @click.option("--no-resume", is_flag=True, help="Record the decision only.")
    def command(
        run_id: str, step: str, by: str, reason: str, definitions_file: Path, no_resume: bool
    ) -> None:
        _decide(decision, run_id, step, by, reason, definitions_file, no_resume)

    return command


approve = _decision_command("approve", "Approve")
reject = _decision_command("reject", "Reject")


@click.command()
@click.argument("run_id")
@_definitions_option
def resume(run_id: str, definitions_file: Path) -> None:
    """Re-execute failed run RUN_ID from failure (a gate acts on its recorded decision)."""
    try:
        instance, _ = open_instance(Path.cwd())
        with instance:
            _resume(instance, run_id, definitions_file)
    except MarigoldError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
