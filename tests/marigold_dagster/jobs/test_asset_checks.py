"""Declared asset checks: what the ops evaluate is listed as the assets' checks, and recorded
against them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    MetadataValue,
)

from marigold_dagster import keys
from marigold_dagster.jobs.asset_checks import recheck_from
from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.launch_inputs import input_run_config
from marigold_dagster.template.loader import load_template

ROOT = Path(__file__).parents[3]
TRIAGE_ROWS = AssetCheckKey(AssetKey(["contract_review", "triage"]), "every_row_processed")
PLAN_VALID = AssetCheckKey(AssetKey(["contract_review", "deep_review", "plan"]), "plan_validated")
REVIEW_CHECKS = {TRIAGE_ROWS, PLAN_VALID}


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return build_defs(ROOT / "templates")


@pytest.fixture(scope="module")
def reviewed(defs: Definitions) -> Iterator[tuple[DagsterInstance, str]]:
    """An instance holding one offline run of contract_review, and that run's id."""
    frame = load_template(ROOT / "templates" / "contract_review.yaml")
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("contract_review").execute_in_process(
            instance=instance, run_config=input_run_config(frame, {})
        )
        assert result.success
        yield instance, result.run_id


def _recheck(defs: Definitions, instance: DagsterInstance) -> str:
    job = defs.resolve_implicit_global_asset_job_def()
    subset = job.get_subset(asset_selection=set(), asset_check_selection=REVIEW_CHECKS)
    result = subset.execute_in_process(instance=instance)
    assert result.success
    return result.run_id


def test_batch_and_planning_steps_declare_their_checks(defs: Definitions) -> None:
    declared = defs.resolve_asset_graph().asset_check_keys
    assert REVIEW_CHECKS <= declared  # a batch step and a planning step
    digest = AssetCheckKey(AssetKey(["contract_digest", "label_risk"]), "every_row_processed")
    assert digest in declared
    assert not [k for k in declared if k.asset_key.path[0] == "contract_signoff"]  # neither


def test_a_runs_evaluations_are_recorded_against_the_declared_checks(
    defs: Definitions, reviewed: tuple[DagsterInstance, str]
) -> None:
    instance, run_id = reviewed
    for check in REVIEW_CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(check)
        assert record is not None and record.run_id == run_id
        assert record.status.value == "SUCCEEDED"  # evaluated, and passed


def test_executing_a_declared_check_re_evaluates_the_latest_materialization(
    defs: Definitions, reviewed: tuple[DagsterInstance, str]
) -> None:
    instance, run_id = reviewed
    recheck_run = _recheck(defs, instance)
    for check in REVIEW_CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(check)
        assert record is not None and record.run_id == recheck_run != run_id
        assert record.status.value == "SUCCEEDED"  # evaluated, and passed


def test_a_check_fails_without_a_materialization_or_with_dead_letters() -> None:
    never = recheck_from(TRIAGE_ROWS, None)
    assert not never.passed and never.severity is AssetCheckSeverity.WARN
    dead = recheck_from(
        TRIAGE_ROWS,
        {
            keys.ROWS_DEAD_LETTERED_KEY: MetadataValue.int(2),
            keys.RECONCILIATION_KEY: MetadataValue.text("10 rows: 8 processed, 2 dead-lettered"),
        },
    )
    assert not dead.passed and dead.metadata[keys.ROWS_DEAD_LETTERED_KEY].value == 2
    rejected = recheck_from(PLAN_VALID, {keys.ATTEMPTS_KEY: MetadataValue.int(3)})
    assert not rejected.passed  # the plan asset was recorded without an accepted fragment
