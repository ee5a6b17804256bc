"""Task lineage: the chain of tasks a correlation id belongs to, and `marigold lineage`.

Each task is the runs sharing one correlation id (a re-execution stays in its task); its
children are the tasks whose runs name it as `marigold/parent_correlation_id` (a chained
follow-up, an agent's sub-task). `task_lineage` climbs from the asked task to its root, then
walks every child down, reading everything from the Dagster instance.

Example:
    $ marigold lineage 0b6c6f9e-3c1a-4d43-9e0c-5d1f3a1f2b7e
    task 0b6c6f9e-3c1a-4d43-9e0c-5d1f3a1f2b7e  <- asked
      run 41d0c2aa  contract_review v1  SUCCESS  steps: 6 succeeded  20,135 tokens  $0.00
      task 7e9d...
        run 9a3b11f0  contract_digest v1  SUCCESS  steps: 4 succeeded  0 tokens  $0.00
    2 tasks, 2 runs, 20,135 tokens, $0.00
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click
from dagster import DagsterInstance, RunRecord, RunsFilter

from marigold_dagster.errors import MarigoldError, UnknownCorrelationId
from marigold_dagster.keys import CORRELATION_TAG, PARENT_CORRELATION_TAG
from marigold_dagster.planning.budget import BudgetUse
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.run_history import RunFacts, run_facts


@dataclass(frozen=True)
class TaskNode:
    """One task: its runs (oldest first) and the tasks it started."""

    correlation_id: str
    runs: tuple[RunFacts, ...]
    children: tuple[TaskNode, ...] = ()

    def walk(self) -> list[TaskNode]:
        """This task and every task below it, depth first."""
        return [self, *(node for child in self.children for node in child.walk())]

    def total_use(self) -> BudgetUse:
        """What every run of this task and of the tasks below it used."""
        total = BudgetUse()
        for node in self.walk():
            for facts in node.runs:
                total = total.plus(facts.use)
        return total


@dataclass(frozen=True)
class Lineage:
    """The chain around one task: the root, which task was asked for, the root's own parent."""

    root: TaskNode
    asked: str
    outside_parent: str | None = None  # the root names a parent task with no runs here

    def render(self) -> str:
        lines = []
        if self.outside_parent:
            lines.append(f"(started by task {self.outside_parent}, which has no runs here)")
        self._render(self.root, 0, lines)
        nodes = self.root.walk()
        runs = sum(len(node.runs) for node in nodes)
        use = self.root.total_use()
        lines.append(
            f"{len(nodes)} task{'s' if len(nodes) != 1 else ''}, {runs} run"
            f"{'s' if runs != 1 else ''}, {use.tokens:,} tokens, ${use.cost_usd:.2f}"
        )
        return "\n".join(lines)

    def _render(self, node: TaskNode, depth: int, lines: list[str]) -> None:
        indent = "  " * depth
        mark = "  <- asked" if node.correlation_id == self.asked else ""
        lines.append(f"{indent}task {node.correlation_id}{mark}")
        for facts in node.runs:
            lines.append(
                f"{indent}  run {facts.run_id[:8]}  {facts.template} v{facts.version}  "
                f"{facts.status}  steps: {facts.steps_text()}  "
                f"{facts.use.tokens:,} tokens  ${facts.use.cost_usd:.2f}"
            )
        for child in node.children:
            self._render(child, depth + 1, lines)


def task_lineage(instance: DagsterInstance, correlation_id: str) -> Lineage:
    """The chain of tasks that `correlation_id` (or a run id of one of its runs) belongs to.

    Raises:
        UnknownCorrelationId: when no run carries that correlation id and no run has that id.
    """
    asked = _resolve(instance, correlation_id)
    root, outside_parent = asked, None
    climbed = {asked}
    while True:
        parent = _parent_of(instance, root)
        if parent is None:
            break
        if parent in climbed:  # a loop of tags: stop where it closes
            break
        if not _task_records(instance, parent):
            outside_parent = parent
            break
        climbed.add(parent)
        root = parent
    return Lineage(_build(instance, root, set()), asked, outside_parent)


def _resolve(instance: DagsterInstance, given: str) -> str:
    if _task_records(instance, given):
        return given
    records = instance.get_run_records(RunsFilter(run_ids=[given]), limit=1)
    if records:
        return records[0].dagster_run.tags.get(CORRELATION_TAG) or given
    raise UnknownCorrelationId(
        f"no run in this Dagster instance carries correlation id '{given}' "
        f"(tag {CORRELATION_TAG}), and no run has that run id; "
        "`marigold runs` lists recent runs with their task (correlation) ids"
    )


def _task_records(instance: DagsterInstance, correlation_id: str) -> list[RunRecord]:
    """The task's runs, oldest first: tagged with its id, or the untagged run of that id."""
    records = list(instance.get_run_records(RunsFilter(tags={CORRELATION_TAG: correlation_id})))
    if not records:
        by_id = instance.get_run_records(RunsFilter(run_ids=[correlation_id]), limit=1)
        records = [r for r in by_id if CORRELATION_TAG not in r.dagster_run.tags]
    return sorted(records, key=lambda record: record.create_timestamp)


def _parent_of(instance: DagsterInstance, correlation_id: str) -> str | None:
    for record in _task_records(instance, correlation_id):
        parent = record.dagster_run.tags.get(PARENT_CORRELATION_TAG)
        if parent:
            return parent
    return None


def _build(instance: DagsterInstance, correlation_id: str, seen: set[str]) -> TaskNode:
    seen.add(correlation_id)
    runs = tuple(run_facts(instance, r) for r in _task_records(instance, correlation_id))
    started = instance.get_run_records(RunsFilter(tags={PARENT_CORRELATION_TAG: correlation_id}))
    child_ids: list[str] = []
    for record in sorted(started, key=lambda r: r.create_timestamp):
        child = record.dagster_run.tags.get(CORRELATION_TAG) or record.dagster_run.run_id
        if child not in seen and child not in child_ids:
            child_ids.append(child)
    children = tuple(_build(instance, child, seen) for child in child_ids if child not in seen)
    return TaskNode(correlation_id, runs, children)


@click.command("lineage")
@click.argument("correlation_id")
def lineage_command(correlation_id: str) -> None:
    """Print the chain of tasks CORRELATION_ID belongs to: each run's status, steps and use."""
    try:
        instance, _ = open_instance(Path.cwd())
        with instance:
            lineage = task_lineage(instance, correlation_id)
            click.echo(lineage.render())
    except MarigoldError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
