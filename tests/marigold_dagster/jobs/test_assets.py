"""Asset specs: each template's inputs, steps, plans, planned steps and gate decisions, with
lineage along the data flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DynamicPartitionsDefinition

from marigold_dagster.jobs.definitions import build_defs
from marigold_dagster.jobs.launch_inputs import input_run_config
from marigold_dagster.template.loader import load_template

ROOT = Path(__file__).parents[3]


def test_flagship_lineage_runs_input_to_steps_to_plan_to_result():
    defs = build_defs(ROOT / "templates")
    graph = defs.resolve_asset_graph()
    key = lambda *path: AssetKey(["contract_review", *path])  # noqa: E731
    deps = {k: set(graph.get(k).parent_keys) for k in graph.get_all_asset_keys()}
    # load, route and summary record no materialization (`materialize: results`), so they are
    # not declared; lineage passes through them
    assert key("load") not in deps and key("route") not in deps and key("summary") not in deps
    assert deps[key("triage")] == {key("inputs", "contracts")}
    assert deps[key("deep_review", "plan")] == {key("triage")}
    assert deps[key("deep_review", "planned")] == {key("deep_review", "plan")}
    assert deps[key("deep_review")] == {key("deep_review", "plan"), key("deep_review", "planned")}
    assert deps[key("finalize")] == {key("deep_review"), key("triage")}
    assert graph.get(key("deep_review", "plan")).group_name == "contract_review"


def test_planned_steps_and_gate_decisions_are_dynamically_partitioned_assets():
    defs = build_defs(ROOT / "templates")
    graph = defs.resolve_asset_graph()
    planned = graph.get(AssetKey(["contract_review", "deep_review", "planned"])).partitions_def
    assert isinstance(planned, DynamicPartitionsDefinition)
    assert planned.name == "contract_review__deep_review__planned"
    gate = AssetKey(["contract_signoff", "sign_off", "gate"])
    assert isinstance(graph.get(gate).partitions_def, DynamicPartitionsDefinition)
    downstream = [k for k in graph.get_all_asset_keys() if gate in graph.get(k).parent_keys]
    assert downstream == [AssetKey(["contract_signoff", "sign_off"])]


@pytest.mark.parametrize("template", ["contract_review", "contract_digest"])
def test_every_declared_asset_is_reported_by_a_run(template: str):
    """The catalog matches what ran: a run materializes (or, for inputs, observes) every asset
    the definitions declare for its template, except planned-step and gate partitions, which
    exist only when a plan or a decision does."""
    defs = build_defs(ROOT / "templates")
    frame = load_template(ROOT / "templates" / f"{template}.yaml")
    declared = {
        key
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if key.path[0] == template and key.path[-1] not in ("gate",)
    }
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(template).execute_in_process(
            instance=instance, run_config=input_run_config(frame, {})
        )
        reported = {
            entry.dagster_event.asset_key
            for kind in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION)
            for entry in instance.all_logs(result.run_id, of_type=kind)
        }
    assert declared - reported == set()
