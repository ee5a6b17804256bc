"""Run history: template runs as the Dagster instance records them, and `marigold runs`.

A run's facts (template, status, task ids, step counts, budget use) are read from the instance
alone: its tags and its event log. So they hold for every run however it was launched (the
Launchpad, a sensor, a schedule, `marigold run`) and need no template, except to show budget use
against the ceilings ("47 of 100 steps, ..."), which come from the template of the same version.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRecord,
    RunsFilter,
)

from marigold_dagster import keys
from marigold_dagster.errors import MarigoldError
from marigold_dagster.keys import PAUSED_AT_GATE, TEMPLATE_TAG, TEMPLATE_VERSION_TAG
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.records.budget_use import budget_use
from marigold_dagster.records.correlation import correlation_id_of, parent_correlation_id_of
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.metadata import metadata_int
from marigold_dagster.records.run_summary import SUMMARY_MESSAGE
from marigold_dagster.template.loader import load_templates
from marigold_dagster.template.model import Template

_STEP_EVENT_STATUS = {
    DagsterEventType.STEP_SUCCESS: "succeeded",
    DagsterEventType.STEP_FAILURE: "failed",
    DagsterEventType.STEP_SKIPPED: "skipped",
}


@dataclass(frozen=True)
class RunFacts:
    """One template run: who it is, how it ended, what it used."""

    run_id: str
    template: str
    version: str
    status: str
    correlation_id: str
    parent_correlation_id: str | None
    started_at: float | None
    use: BudgetUse
    step_counts: dict[str, int] = field(default_factory=dict)

    def steps_text(self) -> str:
        """`5 succeeded, 1 skipped` (template steps when the run has its summary)."""
        counts = sorted(self.step_counts.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{n} {status}" for status, n in counts) or "no steps ran"

    def started_text(self) -> str:
        if self.started_at is None:
            return "not started"
        return datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run_status(run: DagsterRun) -> str:
    """Dagster's status of a run, except `PAUSED` for a run that ended waiting at a gate."""
    if run.status is DagsterRunStatus.SUCCESS and run.tags.get(PAUSED_AT_GATE):
        return "PAUSED"
    return run.status.value


def run_facts(instance: DagsterInstance, record: RunRecord) -> RunFacts:
    """The facts of one recorded run, from its tags and its event log."""
    run = record.dagster_run
    return RunFacts(
        run_id=run.run_id,
        template=run.tags.get(TEMPLATE_TAG, run.job_name),
        version=run.tags.get(TEMPLATE_VERSION_TAG, "?"),
        status=run_status(run),
        correlation_id=correlation_id_of(run),
        parent_correlation_id=parent_correlation_id_of(run),
        started_at=record.start_time,
        use=budget_use(instance, run.run_id),
        step_counts=step_counts(instance, run.run_id),
    )


def step_counts(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """Steps per status: the run summary's template steps when recorded, else Dagster steps."""
    types = {DagsterEventType.ENGINE_EVENT, *_STEP_EVENT_STATUS}
    summarised: dict[str, int] | None = None
    by_key: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=types):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type is DagsterEventType.ENGINE_EVENT:
            if (event.message or "").startswith(SUMMARY_MESSAGE):
                values = {k: v.value for k, v in event.engine_event_data.metadata.items()}
                summarised = {
                    key.removeprefix(keys.STEP_COUNT_PREFIX): metadata_int(values, key)
                    for key in values
                    if key.startswith(keys.STEP_COUNT_PREFIX)
                }
        elif entry.step_key is not None:
            by_key[entry.step_key] = _STEP_EVENT_STATUS[event.event_type]
    if summarised is not None:
        return summarised
    counts: dict[str, int] = {}
    for status in by_key.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def template_run_records(
    instance: DagsterInstance, template: str | None = None, page: int = 100
) -> Iterator[RunRecord]:
    """Records of template runs (runs tagged with their template), newest first."""
    filters = RunsFilter(tags={TEMPLATE_TAG: template}) if template else None
    cursor: str | None = None
    while True:
        records = instance.get_run_records(filters=filters, limit=page, cursor=cursor)
        for record in records:
            if TEMPLATE_TAG in record.dagster_run.tags:
                yield record
        if len(records) < page:
            return
        cursor = records[-1].dagster_run.run_id


def recent_runs(
    instance: DagsterInstance, limit: int = 20, template: str | None = None
) -> list[RunFacts]:
    """The facts of the `limit` most recent template runs (of `template` if given)."""
    facts: list[RunFacts] = []
    for record in template_run_records(instance, template):
        if len(facts) >= limit:
            break
        facts.append(run_facts(instance, record))
    return facts


def use_text(facts: RunFacts, templates: Mapping[str, Template]) -> str:
    """Budget use against the template's ceilings when that version is known, else plain use."""
    template = templates.get(facts.template)
    if template is not None and str(template.version) == facts.version:
        return BudgetStatus(template.budget, facts.use).describe()
    use = facts.use
    return f"{use.steps} steps, {use.phases} phases, {use.tokens:,} tokens, ${use.cost_usd:.2f}"


def render_runs(runs: list[RunFacts], templates: Mapping[str, Template]) -> str:
    """One line per run: when, which, how it ended, its budget use and its task."""
    if not runs:
        return "no template runs in this Dagster instance"
    lines = []
    for facts in runs:
        lines.append(
            f"{facts.started_text()}  {facts.run_id[:8]}  {facts.template} v{facts.version}  "
            f"{facts.status}  {use_text(facts, templates)}  task {facts.correlation_id}"
        )
    return "\n".join(lines)


@click.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--template", default=None, help="Only runs of this template.")
@click.option(
    "--templates-dir",
    type=click.Path(path_type=Path),
    default=Path("templates"),
    show_default=True,
    help="Where the templates are (for their budget ceilings).",
)
def runs_command(limit: int, template: str | None, templates_dir: Path) -> None:
    """List recent template runs with their status, budget use and task (correlation) id."""
    try:
        templates = {frame.name: frame.template for frame in load_templates(templates_dir)}
    except MarigoldError as error:
        templates = {}
        first = str(error).splitlines()[0]
        click.echo(f"note: budget ceilings unknown ({first}); showing use only", err=True)
    try:
        instance, _ = open_instance(Path.cwd())
    except MarigoldError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    with instance:
        click.echo(render_runs(recent_runs(instance, limit, template), templates))
