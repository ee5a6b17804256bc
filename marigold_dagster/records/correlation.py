"""Correlation ids: the run tags that tie a run to its task, and a task to the task that began it.

A *task* is one piece of work someone (a person, a sensor, a schedule, an agent) asked for. Each
task gets a new `marigold/correlation_id` (a uuid4); every run of it carries that id, so a
re-execution, which inherits its parent run's tags, stays in the same task. A task started
because another finished (a chained follow-up, an agent's sub-task) also carries
`marigold/parent_correlation_id`: the id of the task that started it.

A run launched without the tag (the Launchpad, GraphQL, `dagster job execute`, a re-execution of
such a run) is tagged by its first op (`trace_run`): a re-execution with its parent run's task
id, any other run with its root run's id, which is its own id for a run that is not a
re-execution. The id is derived, not drawn, so ops racing to tag a run agree.

Example:
    >>> tags = correlation_tags(parent="7f1c...")
    >>> sorted(tags)
    ['marigold/correlation_id', 'marigold/parent_correlation_id']
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from dagster import DagsterInstance, DagsterRun

from marigold_dagster.errors import MarigoldError
from marigold_dagster.keys import (
    CORRELATION_TAG,
    PARENT_CORRELATION_TAG,
    REEXECUTION_OF_TAG,
    TEMPLATE_TAG,
    TEMPLATE_VERSION_TAG,
)
from marigold_dagster.template.frame import Frame


def new_correlation_id() -> str:
    """A fresh task id (a uuid4 in its 36-character text form)."""
    return str(uuid.uuid4())


def correlation_tags(
    parent: str | None = None, correlation_id: str | None = None
) -> dict[str, str]:
    """The tags of a new task's run: its own id (new unless given) and its parent's, if any.

    Raises:
        MarigoldError: when `parent` or `correlation_id` is given but blank.
    """
    for label, value in (("parent correlation id", parent), ("correlation id", correlation_id)):
        if value is not None and not value.strip():
            raise MarigoldError(f"a {label} is a non-empty string such as a uuid4; got {value!r}")
    tags = {CORRELATION_TAG: correlation_id or new_correlation_id()}
    if parent is not None:
        tags[PARENT_CORRELATION_TAG] = parent
    return tags


def launch_tags(frame: Frame, parent: str | None = None) -> dict[str, str]:
    """Every tag a triggered run of `frame`'s job carries: a new task id and the template's."""
    return {
        TEMPLATE_TAG: frame.name,
        TEMPLATE_VERSION_TAG: str(frame.template.version),
        **correlation_tags(parent),
    }


def correlation_id_of(run: DagsterRun) -> str:
    """The task a run belongs to: its correlation tag, or its root run's id when it has none."""
    return run.tags.get(CORRELATION_TAG) or run.root_run_id or run.run_id


_TRACED: set[str] = set()  # runs this process has tagged already (one write per run, not per op)


def trace_run(
    instance: DagsterInstance, run: DagsterRun, extra: Mapping[str, str] | None = None
) -> None:
    """Give a run that lacks them its task tags (`task_tags_for`) and `extra` (tags it does not
    have yet); once per run per process."""
    if run.run_id in _TRACED:
        return
    missing = task_tags_for(instance, run)
    missing.update({k: v for k, v in (extra or {}).items() if k not in run.tags})
    if missing:
        instance.add_run_tags(run.run_id, missing)
    _TRACED.add(run.run_id)


def task_tags_for(instance: DagsterInstance, run: DagsterRun) -> dict[str, str]:
    """The task tags `run` lacks: its parent run's (for a re-execution) or its root run's id,
    and for a re-execution the run it re-executes (`marigold/reexecution_of`)."""
    tags: dict[str, str] = {}
    if run.parent_run_id and run.tags.get(REEXECUTION_OF_TAG) != run.parent_run_id:
        tags[REEXECUTION_OF_TAG] = run.parent_run_id
    if run.tags.get(CORRELATION_TAG):
        return tags
    parent = instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    if parent is not None:
        tags[CORRELATION_TAG] = correlation_id_of(parent)
        if parent.tags.get(PARENT_CORRELATION_TAG):
            tags[PARENT_CORRELATION_TAG] = parent.tags[PARENT_CORRELATION_TAG]
    else:
        tags[CORRELATION_TAG] = run.root_run_id or run.run_id
    return tags


def parent_correlation_id_of(run: DagsterRun) -> str | None:
    """The task that started this run's task, if one did."""
    return run.tags.get(PARENT_CORRELATION_TAG) or None
