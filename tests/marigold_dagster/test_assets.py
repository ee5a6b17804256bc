"""Asset specs: each template's inputs, steps and plans, with lineage along the data flow."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey

from marigold_dagster.defs import build_defs

ROOT = Path(__file__).parents[2]


def test_flagship_lineage_runs_input_to_steps_to_plan_to_result():
    defs = build_defs(ROOT / "templates")
    graph = defs.resolve_asset_graph()
    key = lambda *path: AssetKey(["contract_review", *path])  # noqa: E731
    deps = {k: set(graph.get(k).parent_keys) for k in graph.get_all_asset_keys()}
    assert deps[key("load")] == {key("inputs", "contracts")}
    assert deps[key("triage")] == {key("load")}
    assert deps[key("deep_review", "plan")] == {key("route")}
    assert deps[key("deep_review")] == {key("deep_review", "plan")}
    assert deps[key("finalize")] == {key("deep_review"), key("summary")}
    assert graph.get(key("deep_review", "plan")).group_name == "contract_review"
