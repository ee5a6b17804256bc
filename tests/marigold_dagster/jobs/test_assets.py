"""Asset specs: each template's inputs, steps, plans, planned steps and gate decisions, with
lineage along the data flow."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, DynamicPartitionsDefinition

from marigold_dagster.jobs.definitions import build_defs

ROOT = Path(__file__).parents[3]


def test_flagship_lineage_runs_input_to_steps_to_plan_to_result():
    defs = build_defs(ROOT / "templates")
    graph = defs.resolve_asset_graph()
    key = lambda *path: AssetKey(["contract_review", *path])  # noqa: E731
    deps = {k: set(graph.get(k).parent_keys) for k in graph.get_all_asset_keys()}
    assert deps[key("load")] == {key("inputs", "contracts")}
    assert deps[key("triage")] == {key("load")}
    assert deps[key("deep_review", "plan")] == {key("route")}
    assert deps[key("deep_review", "planned")] == {key("deep_review", "plan")}
    assert deps[key("deep_review")] == {key("deep_review", "plan"), key("deep_review", "planned")}
    assert deps[key("finalize")] == {key("deep_review"), key("summary")}
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
