"""Correlation ids: every task run is tagged with its own id and, when started by one, its
parent's; `marigold run` (run_locally) tags its runs too."""

from __future__ import annotations

import uuid

import pytest
from dagster import job, op

from marigold_dagster.errors import MarigoldError
from marigold_dagster.keys import CORRELATION_TAG, PARENT_CORRELATION_TAG
from marigold_dagster.records.correlation import (
    correlation_id_of,
    correlation_tags,
    parent_correlation_id_of,
)
from marigold_dagster.runs.local_run import run_locally

TINY = """name: tiny
version: 5
inputs:
  rows: {kind: table, default: rows.csv}
budget: {max_steps: 5, max_tokens: 10, max_cost_usd: 1, max_fanout: 2}
steps:
  - {name: load, uses: acquire.read_table, with: {input: rows}}
  - {name: count, depends_on: [load], uses: aggregate.count, with: {by: [kind]}}
"""


@op
def nothing() -> None:
    pass


@job
def untagged() -> None:
    nothing()


def test_each_task_gets_a_new_uuid4_and_names_its_parent():
    first, second = correlation_tags(), correlation_tags(parent="p-1")
    assert uuid.UUID(first[CORRELATION_TAG]).version == 4
    assert first[CORRELATION_TAG] != second[CORRELATION_TAG]
    assert PARENT_CORRELATION_TAG not in first
    assert second[PARENT_CORRELATION_TAG] == "p-1"
    assert correlation_tags(correlation_id="given")[CORRELATION_TAG] == "given"


def test_a_blank_parent_is_refused():
    with pytest.raises(MarigoldError, match="a parent correlation id is a non-empty string"):
        correlation_tags(parent=" ")


def test_an_untagged_run_is_a_task_of_its_own(instance):
    run = untagged.execute_in_process(instance=instance).dagster_run
    assert correlation_id_of(run) == run.run_id
    assert parent_correlation_id_of(run) is None


def test_run_locally_tags_its_run_with_a_new_task_and_its_parent(
    tmp_path, postgres_instance, monkeypatch
):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "tiny.yaml").write_text(TINY)
    (templates / "rows.csv").write_text("kind\na\nb\na\n")
    monkeypatch.setenv("DAGSTER_HOME", postgres_instance.root_directory)
    outcome = run_locally("tiny", templates, parent_correlation_id="parent-task")
    assert outcome.success
    tags = postgres_instance.get_run_by_id(outcome.summary.run_id).tags
    assert tags[CORRELATION_TAG] == outcome.correlation_id
    assert uuid.UUID(outcome.correlation_id).version == 4
    assert tags[PARENT_CORRELATION_TAG] == "parent-task"
    assert tags["marigold/template"] == "tiny" and tags["marigold/template_version"] == "5"

    again = run_locally("tiny", templates)
    assert again.correlation_id != outcome.correlation_id
    again_tags = postgres_instance.get_run_by_id(again.summary.run_id).tags
    assert PARENT_CORRELATION_TAG not in again_tags
